"""The synthetic task's scores of an evaluator run: accuracy by difficulty (the ids say it) and where the
templated reasoning goes wrong.

    python -m r1reward_verl.demo.scoring runs/eval/items.jsonl     # the evaluator's items -> accuracy, easy vs hard
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from r1reward_verl.demo.synth import REASONING_RE, difficulty_of_id
from r1reward_verl.eval.metrics import pct, primary_right, swapped_view


def accuracy_by_difficulty(records: list[dict]) -> dict:
    """The evaluator's ``items.jsonl`` records -> per benchmark and difficulty: ``n``, ``acc`` (greedy, or
    the first sample, as the benchmark metrics) and, with ``--swap``, ``acc_both_orders`` (in percent)."""
    groups: dict = {}
    for r in records:
        d = difficulty_of_id(str(r["id"]))
        if d is not None:
            groups.setdefault(r["benchmark"], {}).setdefault(d, []).append(r)
    out = {}
    for bench, by_d in sorted(groups.items()):
        out[bench] = {}
        for d, recs in sorted(by_d.items()):
            entry = {"n": len(recs), "acc": pct(sum(primary_right(r) for r in recs), len(recs))}
            if all(r.get("swapped") for r in recs):
                both = sum(primary_right(r) and primary_right(swapped_view(r)) for r in recs)
                entry["acc_both_orders"] = pct(both, len(recs))
            out[bench][d] = entry
    return out


def reasoning_steps(records: list[dict], meta_by_id: dict[str, dict]) -> dict:
    """Where the templated reasoning goes wrong: the evaluator's ``items.jsonl`` records (greedy, or the
    first sample; both orders when asked with ``--swap``) and the pairs' ``meta`` by id (``heldout/pairs.jsonl``)
    -> per difficulty, the share (percent) of outputs that ``parsed`` as the template (:data:`~r1reward_verl.demo.synth.REASONING_RE`),
    and of the parsed ones those that ``see`` the image's colour, ``read`` both responses' colours in their
    order, and ``copy`` the number of the response whose colour they saw (whatever they saw): the steps of
    :func:`~r1reward_verl.demo.synth.reasoning_text` (None when nothing parsed). A parsed output with all three right is a right answer."""
    counts: dict = {}
    for r in records:
        meta = meta_by_id.get(str(r["id"]))
        if meta is None:
            raise KeyError(f"no meta for item {r['id']!r}: pass the held-out pairs.jsonl the items were made from")
        views = [r, {**swapped_view(r), "outputs": r["swapped"]["outputs"]}] if r.get("swapped") else [r]
        c = counts.setdefault(meta["difficulty"], {"n": 0, "parsed": 0, "see": 0, "read": 0, "copy": 0})
        for v in views:
            c["n"] += 1
            said = {int(v["label"]): meta["colour"], 3 - int(v["label"]): meta["wrong"]}
            m = re.search(r"<think>(.*?)</think>", v["outputs"][0], re.S)
            g = REASONING_RE.match(m.group(1).strip()) if m else None
            if g is None:
                continue
            c["parsed"] += 1
            c["see"] += g["colour"] == meta["colour"]
            c["read"] += (g["said_1"], g["said_2"]) == (said[1], said[2])
            c["copy"] += g["said_" + g["match"]] == g["colour"]
    return {d: {"n": c["n"], "parsed": round(pct(c["parsed"], c["n"]), 1),
                **{k: round(pct(c[k], c["parsed"]), 1) if c["parsed"] else None for k in ("see", "read", "copy")}}
            for d, c in sorted(counts.items())}  # fmt: skip



def main(argv=None) -> int:
    from r1reward_verl.eval.runner import read_items

    parser = argparse.ArgumentParser(prog="python -m r1reward_verl.demo.scoring", description=__doc__.splitlines()[0])
    parser.add_argument("items", help="the evaluator's items.jsonl")
    args = parser.parse_args(argv)
    print(json.dumps(accuracy_by_difficulty(read_items(args.items)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
