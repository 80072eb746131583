"""Each checkpoint of the miniature on its held-out benchmark, with the real evaluator (``r1reward_verl.eval``)."""

from __future__ import annotations

import shutil
from pathlib import Path

from r1reward_verl.demo.plan import Plan


def accuracies(records: list[dict]) -> dict:
    """Held-out accuracy of an evaluation's records: overall, easy, hard and right in both orders (%)."""
    from r1reward_verl.demo.scoring import accuracy_by_difficulty

    by_d = accuracy_by_difficulty(records)["vl_rewardbench"]
    n = sum(v["n"] for v in by_d.values())
    return {
        "accuracy": round(sum(v["acc"] * v["n"] for v in by_d.values()) / n, 1),
        "accuracy_easy": by_d.get("easy", {}).get("acc"),
        "accuracy_hard": by_d.get("hard", {}).get("acc"),
        "accuracy_both_orders": round(sum(v["acc_both_orders"] * v["n"] for v in by_d.values()) / n, 1),
    }


def evaluate_model(wd: Path, name: str, model: Path, plan: Plan, seed: int, margin: bool = True) -> dict:
    """Held-out accuracy of ``model`` with the real evaluator: greedy (+ voting@k), both orders; ``margin``: and
    its :func:`copy_margin` on the hard pairs."""
    from r1reward_verl.demo.scoring import reasoning_steps
    from r1reward_verl.demo.synth import read_meta
    from r1reward_verl.eval.backends import TransformersBackend
    from r1reward_verl.eval.metrics import pct, vote_right
    from r1reward_verl.eval.runner import evaluate, read_items
    from r1reward_verl.reward.parse import parse_output

    heldout = wd / "data" / "heldout"
    out = wd / "eval" / name
    shutil.rmtree(out, ignore_errors=True)
    backend = TransformersBackend(str(model), max_new_tokens=plan.max_new_tokens, seed=seed, batch_size=plan.eval_batch)
    evaluate({"vl_rewardbench": str(heldout / "vl_rewardbench.jsonl")}, backend, out, k=plan.eval_k, swap=True,
                   seed=seed, media_roots={"vl_rewardbench": str(heldout)}, model_name=name, progress=False)  # fmt: skip
    records = read_items(out / "items.jsonl")
    greedy = [r["outputs"][0] for r in records] + [r["swapped"]["outputs"][0] for r in records]
    res = {
        **accuracies(records),
        "format_rate": round(100.0 * sum(parse_output(t).format_ok for t in greedy) / len(greedy), 1),
        "pairs": len(records),
        # where the reasoning goes wrong: sees the colour, reads both responses, copies the number
        "reasoning": reasoning_steps(records, read_meta(heldout / "pairs.jsonl")),
    }
    if plan.eval_k:  # majority of k samples (a tie or no parsed sample is wrong), paper §5.2
        right = vote_right(plan.eval_k)
        res[f"voting@{plan.eval_k}"] = pct(sum(right(r) for r in records), len(records))
    if margin:
        res["copy_margin_hard"] = copy_margin(backend, heldout, "hard")
    return res


def evaluate_scalar(wd: Path, name: str, model: Path, seed: int, critic: Path | None = None, max_new_tokens: int = 48) -> dict:
    """Held-out accuracy of a scalar reward model (``critic``: critic-then-score) with the real evaluator (its scalar
    backend: each response scored on its own, so both orders agree by construction); format is None (no text)."""
    from r1reward_verl.eval.runner import evaluate, read_items

    heldout = wd / "data" / "heldout"
    out = wd / "eval" / name
    shutil.rmtree(out, ignore_errors=True)
    if critic is None:
        from r1reward_verl.eval.scalar import ScalarBackend

        backend = ScalarBackend(str(model))
    else:
        from r1reward_verl.eval.critic import CriticThenScoreBackend

        backend = CriticThenScoreBackend(str(model), str(critic), max_new_tokens=max_new_tokens, seed=seed)
    evaluate({"vl_rewardbench": str(heldout / "vl_rewardbench.jsonl")}, backend, out, k=0, swap=True, seed=seed,
             media_roots={"vl_rewardbench": str(heldout)}, model_name=name, progress=False)  # fmt: skip
    records = read_items(out / "items.jsonl")
    res = {
        **accuracies(records),
        "format_rate": None,
        "pairs": len(records),
    }
    if critic is not None:
        res["critic_sees_colour"] = critic_sees_colour(backend.critiques, heldout)
    return res


def critic_sees_colour(critiques: dict, heldout: Path) -> dict:
    """% of the critiques (of both responses) that name the image's true colour, by difficulty: the evidence the
    critic hands the scorer. ``critiques``: ``CriticThenScoreBackend.critiques`` of the evaluation's call."""
    from PIL import Image

    from r1reward_verl.demo.synth import read_meta
    from r1reward_verl.eval.loaders import load_benchmark
    from r1reward_verl.eval.metrics import pct
    from r1reward_verl.eval.scalar import _image_key

    meta = read_meta(heldout / "pairs.jsonl")
    seen: dict = {"easy": [], "hard": []}
    for p in load_benchmark("vl_rewardbench", heldout / "vl_rewardbench.jsonl", media_root=heldout).pairs:
        m = meta[str(p.id)]
        img = _image_key([Image.open(x).convert("RGB") for x in p.images])
        for resp in (p.chosen, p.rejected):
            text = critiques.get((p.question, img, resp)) or ""
            seen[m["difficulty"]].append(text.startswith(f"The image shows a {m['colour']} ")
                                         or text.startswith(f"The image shows an {m['colour']} "))  # fmt: skip
    return {d: pct(sum(v), len(v)) for d, v in seen.items() if v}


def copy_margin(backend, heldout: Path, difficulty: str = "hard") -> dict:
    """The step the cold start leaves wrong, as a number that moves with every update: over the held-out pairs of
    ``difficulty`` in both orders, log pi(the templated right output) - log pi(the same reasoning copying the other
    response's number, and answering it), teacher-forced. ``mean`` (nats) and ``positive`` (% of pair-orders
    where the right output is the likelier): what RL on the result reward must raise, and a flipped loss lowers."""
    from r1reward_verl.demo.synth import read_meta, reasoning_text
    from r1reward_verl.eval.loaders import load_benchmark
    from r1reward_verl.eval.metrics import pct
    from r1reward_verl.eval.runner import build_request
    from r1reward_verl.eval.scoring import completion_logprobs

    meta = read_meta(heldout / "pairs.jsonl")
    pairs = load_benchmark("vl_rewardbench", heldout / "vl_rewardbench.jsonl", media_root=heldout).pairs
    margins = []
    for pair in pairs:
        m = meta[str(pair.id)]
        if m["difficulty"] != difficulty:
            continue
        for first in (True, False):
            said, right = ((m["colour"], m["wrong"]), 1) if first else ((m["wrong"], m["colour"]), 2)
            good = f"<think>{reasoning_text(m['colour'], m['shape'], *said)}</think><answer>{right}</answer>"
            bad = f"<think>{reasoning_text(m['colour'], m['shape'], *said, copied=3 - right)}</think><answer>{3 - right}</answer>"
            lp_good, lp_bad = completion_logprobs(backend, build_request(pair, first, greedy=True, n=1), [good, bad])
            margins.append(lp_good - lp_bad)
    return {"mean": round(sum(margins) / len(margins), 3), "positive": round(pct(sum(d > 0 for d in margins), len(margins)), 1),
            "n": len(margins)}  # fmt: skip
