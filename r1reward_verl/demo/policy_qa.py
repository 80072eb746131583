"""A sample vision-language *policy* dataset in verl's RL parquet format, for runs rewarded by the pairwise judge.

    python -m preprocess.policy_qa --out DIR [--n-train 512] [--n-val 32] [--seed 0] [--size 56]

Rows are questions about ``r1reward_verl.demo.synth``'s images ("What colour is the shape?"), as a policy (not a
reward model) sees them: ``prompt`` = one user turn ``<image>`` + the question; ``images`` = ``[{"bytes": PNG}]``
(verl's ``RLHFDataset`` turns them into the prompt's image parts); ``reward_model`` = ``{"style": "model",
"ground_truth": <reference answer>}``; ``extra_info`` = ``{"index", "id", "question", "reference"}``. The
judge of ``hydra_configs/genrm_policy.yaml`` is shown the question, the prompt's image and two answers;
``judge_mode=reference`` compares each rollout with ``extra_info.reference``. Seeded: the same arguments
give the same files. Writes ``train.parquet``, ``val.parquet`` and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PROMPT_SUFFIX = " Answer in one short sentence."


def rows(n: int, seed: int, stream: str, size: int) -> list[dict]:
    from r1reward_verl.demo.synth import generate

    out = []
    for i, item in enumerate(generate(n, seed=seed, stream=f"policy-{stream}", size=size, id_prefix=f"{stream}-")):
        question = item.question
        reference = item.response(item.colour)
        out.append({
            "data_source": "synth_qa",
            "prompt": [{"role": "user", "content": "<image>" + question + PROMPT_SUFFIX}],
            "images": [{"bytes": item.png}],
            "ability": "vqa",
            "reward_model": {"style": "model", "ground_truth": reference},
            "extra_info": {"index": i, "id": item.id, "question": question, "reference": reference},
        })  # fmt: skip
    return out


def write(out: Path, n_train: int, n_val: int, seed: int, size: int = 56) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if n_train < 1 or n_val < 1:
        raise ValueError(f"--n-train and --n-val must be >= 1, got {n_train} and {n_val}")
    out.mkdir(parents=True, exist_ok=True)
    summary = {"seed": seed, "size": size, "source": "r1reward-verl-synth"}
    for split, n in (("train", n_train), ("val", n_val)):
        pq.write_table(pa.Table.from_pylist(rows(n, seed, split, size)), out / f"{split}.parquet")
        summary[split] = n
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--n-train", type=int, default=512)
    parser.add_argument("--n-val", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=56, help="image side, a multiple of 28")
    args = parser.parse_args(argv)
    try:
        s = write(Path(args.out), args.n_train, args.n_val, args.seed, args.size)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"policy QA: {s['train']} train, {s['val']} val rows -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
