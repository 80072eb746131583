"""The Bradley-Terry trainer's learning-rate schedule on CPU: constant (what the CPU runs used before) against cosine
after a 10 % warmup (``r1reward_verl.cpu.bt.BT_CPU_SCHEDULE``, what ``hydra_configs/r1reward_bt.yaml`` ships), each
trained ``--runs`` times as ``tests/test_bt.py`` trains (``--steps`` x 16 pairs at ``--lr`` from the miniature's base
on its 1,200 synthetic pairs, torchrun on 2 CPU processes; the test trains 200 steps at 1e-3), then scored on the
held-out benchmark.

    .venv/bin/python benchmarks/bt_schedule.py [--runs 5] [--steps 100] [--lr 1e-3] [--schedules constant,cosine]
        [--workdir /tmp/bt_schedule]

Per run: the mean training accuracy of the last 10 steps, held-out accuracy (200 pairs), the right colour ranked
first among four candidates on 20 easy held-out items, and accuracy on held-out pairs that differ only by their
image. Then the range of each over the runs, and the ratio of held-out errors (cosine / constant).
"""
# benchmarks-test: skip: needs verl training runs (the BT trainer on CPU, ~35 s a run)

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.heldout import colour_candidates, mirrored_pairs, pair_accuracy  # noqa: E402

SCHEDULES = {"constant": ["optim.lr_scheduler_type=constant", "optim.lr_warmup_steps_ratio=0"],
             "cosine": []}  # fmt: skip  (cosine: run_bt's own, BT_CPU_SCHEDULE)


def data(root: Path) -> Path:
    from r1reward_verl.data.pairs import main as pairs_main
    from r1reward_verl.demo.stages import build_base
    from r1reward_verl.demo.synth import write_dataset

    if not (root / "bt" / "train.parquet").exists():
        write_dataset(root / "data", 1200, 200, 0, force=True)
        assert pairs_main(["--input", str(root / "data" / "pairs.jsonl"), "--out", str(root / "rl"), "--bt-out",
                           str(root / "bt"), "--no-progress"]) == 0  # fmt: skip
    return build_base(root, 0)


def one_run(root: Path, base: Path, schedule: str, k: int, n_steps: int, lr: float) -> dict:
    from r1reward_verl.bt.score import ScalarRewardModel
    from r1reward_verl.cpu.bt import run_bt
    from r1reward_verl.eval.loaders import load_benchmark

    wd = root / f"{schedule}_{n_steps}_{lr:g}_{k}"
    model = run_bt(base, root / "bt", wd / "model", wd / "ckpt", wd / "bt.log", steps=n_steps, lr=lr, batch=16, nproc=2,
                   extra=["trainer.logger=[console,file]", "trainer.project_name=bt", "trainer.experiment_name=t",
                          *SCHEDULES[schedule]], env={"VERL_FILE_LOGGER_ROOT": str(wd / "logs")})  # fmt: skip
    steps: dict = {}
    for line in (wd / "logs" / "bt" / "t.jsonl").read_text().splitlines():
        rec = json.loads(line)
        steps.setdefault(rec["step"], {}).update(rec["data"])
    heldout = root / "data" / "heldout"
    scorer = ScalarRewardModel(model)
    pairs = load_benchmark("vl_rewardbench", heldout / "vl_rewardbench.jsonl", media_root=heldout).pairs
    first = 0
    easy = [r for r in map(json.loads, (heldout / "pairs.jsonl").read_text().splitlines())
            if r["meta"]["difficulty"] == "easy"][:20]  # fmt: skip
    for rec in easy:
        colour = rec["meta"]["colour"]
        cands = colour_candidates(colour)
        image = (heldout / rec["images"][0]).read_bytes()
        r = scorer.score([(rec["question"], [image], c) for c in cands])
        first += cands[max(range(len(cands)), key=r.__getitem__)] == f"The shape is {colour}."
    last = max(steps)
    return {"train_acc_last10": sum(steps[s]["bt/accuracy"] for s in range(last - 9, last + 1)) / 10,
            "heldout": pair_accuracy(scorer, pairs), "ranked_first_of_20": first,
            "image_pairs": pair_accuracy(scorer, mirrored_pairs(heldout))}  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--schedules", default="constant,cosine", help="comma-separated: constant, cosine")
    parser.add_argument("--workdir", default="/tmp/bt_schedule")
    args = parser.parse_args(argv)
    names = args.schedules.split(",")
    if not names or set(names) - set(SCHEDULES):
        parser.error(f"--schedules {args.schedules}: the schedules are {', '.join(SCHEDULES)}")
    root = Path(args.workdir)
    base = data(root)
    results: dict = {s: [] for s in names}
    print(f"{args.steps} steps x 16 pairs at lr {args.lr:g}, {args.runs} runs a schedule", flush=True)
    for k in range(args.runs):  # interleaved: a drift of the machine touches both alike
        for s in names:
            results[s].append(one_run(root, base, s, k, args.steps, args.lr))
            print(s, k, json.dumps(results[s][-1]), flush=True)
    print("| schedule | runs | train accuracy, last 10 steps | held-out accuracy | ranked first of 20 | image pairs |")
    print("|---|---|---|---|---|---|")
    for s, rs in results.items():
        cells = [f"{min(r[m] for r in rs):.3g}-{max(r[m] for r in rs):.3g}"
                 for m in ("train_acc_last10", "heldout", "ranked_first_of_20", "image_pairs")]  # fmt: skip
        print(f"| {s} | {len(rs)} | " + " | ".join(cells) + " |")
    err = {s: sum(1 - r["heldout"] for r in rs) / len(rs) for s, rs in results.items()}
    if len(err) == 2:
        print(f"held-out error, cosine / constant: {err['cosine'] / err['constant']:.3f}" if err["constant"] else
              "held-out error, cosine / constant: constant made no error")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
