"""The miniature's critic-then-score data: from the generator's training pairs (``data/pairs.jsonl`` with their
``meta``), the templated critique of each response (:func:`r1reward_verl.demo.synth.critique_text`) as

- ``critic_sft/``: verl SFT parquet, two rows a pair: the critique request (``r1reward_verl.bt.critic``) with the
  pair's image -> the critique (the critic learns to write it);
- ``critic_bt/``: the Bradley-Terry parquet (``preprocess.pairs --bt-out``'s columns) whose assistant turns are
  each response with its gold critique (the scorer learns to score them).

Split by the same seeded id hash as ``preprocess.pairs`` (``split_of``), written whole or not at all."""

from __future__ import annotations

import json
from pathlib import Path

from r1reward_verl.bt.critic import critique_request, scored_response
from r1reward_verl.data.outputs import BT_SCHEMA, SFT_SCHEMA, AtomicParquet, bt_user_turn, commit_all
from r1reward_verl.data.pairs import split_of
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
                split = split_of(rec["id"], seed, val_fraction)
                crit = {}
                for k in (1, 2):
                    resp = rec[f"response_{k}"]
                    crit[k] = critique_text(meta["colour"], meta["shape"], colour_said(resp, PALETTE))
                    writers["critic_sft", split].add({
                        "messages": [{"role": "user", "content": critique_request(rec["question"], resp, 1)},
                                     {"role": "assistant", "content": crit[k]}],
                        "images": [image], "id": f"{rec['id']}-r{k}", "label": str(k)})  # fmt: skip
                    counts["critic_sft", split] += 1
                good, bad = (1, 2) if rec["preferred"] == 1 else (2, 1)
                user = {"role": "user", "content": bt_user_turn(rec["question"], 1)}
                writers["critic_bt", split].add({
                    "chosen_messages": [user, {"role": "assistant", "content": scored_response(rec[f"response_{good}"], crit[good])}],
                    "rejected_messages": [user, {"role": "assistant", "content": scored_response(rec[f"response_{bad}"], crit[bad])}],
                    "images": [image], "id": rec["id"]})  # fmt: skip
                counts["critic_bt", split] += 1
        commit_all(list(writers.values()))
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    return {f"{name}/{split}": n for (name, split), n in counts.items()}
