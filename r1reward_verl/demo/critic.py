"""The miniature's critic-then-score data: from the generator's training pairs (``data/pairs.jsonl`` with their
``meta``), the templated critique of each response (:func:`r1reward_verl.demo.synth.critique_text`) as

- ``critic_sft/``: verl SFT parquet, two rows a pair: the critique request with the pair's image -> the critique
  (the critic learns to write it);
- ``critic_bt/``: the Bradley-Terry parquet (``preprocess.pairs --bt-out``'s columns) whose assistant turns are
  each response with its gold critique (the scorer learns to score them).

The rows are ``preprocess.pairs --critic-out``'s (``r1reward_verl.data.outputs.critic_sft_rows``, ``critic_bt_row``),
built from the generator's records here because its critiques come from their ``meta``.

Split by the same seeded id hash as ``preprocess.pairs`` (``split_of``), written whole or not at all."""

from __future__ import annotations

import json
from pathlib import Path

from r1reward_verl.data.outputs import BT_SCHEMA, SFT_SCHEMA, AtomicParquet, commit_all, critic_bt_row, critic_sft_rows
from r1reward_verl.data.pairs import split_of
from r1reward_verl.data.records import Pair
from r1reward_verl.demo.synth import critique_text


def colour_said(response: str, colours) -> str:
    """The colour a templated response names (its last word)."""
    word = response.rstrip(".").split()[-1]
    if word not in colours:
        raise ValueError(f"no colour in the response {response!r}")
    return word


def write_critic_data(wd: Path, seed: int, val_fraction: float = 0.02) -> dict:
    from r1reward_verl.demo.synth import PALETTE

    data = wd / "data"
    writers = {}
    for name, schema in (("critic_sft", SFT_SCHEMA), ("critic_bt", BT_SCHEMA)):
        (wd / name).mkdir(parents=True, exist_ok=True)
        for split in ("train", "val"):
            writers[name, split] = AtomicParquet(wd / name / f"{split}.parquet", schema, 512)
    counts = {k: 0 for k in writers}
    try:
        with open(data / "pairs.jsonl", encoding="utf-8") as f:
            for rec in map(json.loads, f):
                meta = rec["meta"]
                image = {"bytes": (data / rec["images"][0]).read_bytes(), "path": rec["images"][0]}
                pair = Pair(id=rec["id"], question=rec["question"], images=[image], response_1=rec["response_1"],
                            response_2=rec["response_2"], preferred=rec["preferred"],
                            critiques=tuple(critique_text(meta["colour"], meta["shape"], colour_said(rec[f"response_{k}"], PALETTE))
                                            for k in (1, 2)))  # fmt: skip
                split = split_of(rec["id"], seed, val_fraction)
                for row in critic_sft_rows(pair):
                    writers["critic_sft", split].add(row)
                    counts["critic_sft", split] += 1
                writers["critic_bt", split].add(critic_bt_row(pair))
                counts["critic_bt", split] += 1
        commit_all(list(writers.values()))
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    return {f"{name}/{split}": n for (name, split), n in counts.items()}
