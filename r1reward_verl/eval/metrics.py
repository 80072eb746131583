"""The benchmarks' published metrics over per-item prediction records, voting@k / any@k, position swap.

A record (one per pair, one JSONL line) holds at least ``benchmark, id, category, group, label`` and
``preds``: parsed predictions 1, 2 or None, the greedy one first when ``greedy`` is true, then the
samples in order. With position swap it also holds ``swapped`` = ``{label, preds}`` for the same pair
shown in the other order. Unparsable outputs (None) count as wrong and are reported. A record with
``failed`` (its requests failed: there is no output to score, ``eval run --report-failed``) is in no
denominator; ``failed`` counts them. All values in percent.

- VL-RewardBench: ``overall_acc`` = accuracy over all items (micro); ``macro_acc`` = mean of the
  general / hallucination / reasoning accuracies (the authors recommend macro). The official scorer
  drops unparsable outputs from the denominator: ``official_excluding_unparsable`` reports that too.
- Multimodal RewardBench: accuracy per reported category; ``overall`` = accuracy over all items.
- MM-RLHF-RewardBench: ``acc`` = correct pairs / pairs; ``acc_plus`` = groups whose pairs are all
  correct / groups; per category both (a category's Acc+ divides by its own groups).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Callable, Iterable, Optional

from r1reward_verl.eval.loaders import MMRB_CATEGORIES, MMRLHF_CATEGORIES, VL_CATEGORIES

Pred = Optional[int]
HEADLINE = {"vl_rewardbench": "overall_acc", "multimodal_rewardbench": "overall", "mm_rlhf_rewardbench": "acc"}


def pct(num: float, den: int) -> float:
    return round(100.0 * num / den, 4) if den else float("nan")


def sample_preds(rec: dict) -> list[Pred]:
    preds = rec["preds"]
    return list(preds[1:] if rec.get("greedy") else preds)


def majority_vote(preds: Iterable[Pred]) -> Pred:
    """voting@k (paper §5.2, Fig. 4): the label most of the parsed samples give; a tie or no parsed
    sample gives None (counted wrong)."""
    c = Counter(p for p in preds if p in (1, 2))
    if not c or c[1] == c[2]:
        return None
    return 1 if c[1] > c[2] else 2


def any_correct(preds: Iterable[Pred], label: int) -> bool:
    """any@k (paper Fig. 4): right if at least one of the k samples is right."""
    return any(p == label for p in preds)


def primary_pred(rec: dict) -> Pred:
    """The greedy prediction when there is one, else the first sample."""
    return rec["preds"][0] if rec["preds"] else None


# predictors: record -> is it right?
def primary_right(rec: dict) -> bool:
    """The greedy prediction (else the first sample) is the label; unparsable (None) is wrong."""
    return primary_pred(rec) == rec["label"]


def vote_right(k: int) -> Callable[[dict], bool]:
    return lambda rec: majority_vote(sample_preds(rec)[:k]) == rec["label"]


def any_right(k: int) -> Callable[[dict], bool]:
    return lambda rec: any_correct(sample_preds(rec)[:k], rec["label"])


def accuracy_by(records: list[dict], right: Callable[[dict], bool]) -> tuple[float, dict[str, float]]:
    by_cat: dict[str, list[bool]] = defaultdict(list)
    for r in records:
        by_cat[r["category"]].append(bool(right(r)))
    total = sum(sum(v) for v in by_cat.values())
    return pct(total, len(records)), {c: pct(sum(v), len(v)) for c, v in by_cat.items()}


def vl_rewardbench_metrics(records: list[dict], right: Callable[[dict], bool]) -> dict:
    overall, cats = accuracy_by(records, right)
    present = [cats[c] for c in VL_CATEGORIES if c in cats]
    macro = round(sum(present) / len(present), 4) if present else float("nan")
    return {"overall_acc": overall, "macro_acc": macro, **{c: cats[c] for c in VL_CATEGORIES if c in cats}}


def multimodal_rewardbench_metrics(records: list[dict], right: Callable[[dict], bool]) -> dict:
    overall, cats = accuracy_by(records, right)
    return {"overall": overall, **{c: cats[c] for c in MMRB_CATEGORIES if c in cats}}


def mm_rlhf_rewardbench_metrics(records: list[dict], right: Callable[[dict], bool]) -> dict:
    acc, cats = accuracy_by(records, right)
    groups: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for r in records:
        groups[(r["category"], r["group"])].append(bool(right(r)))
    all_groups: dict[str, list[bool]] = defaultdict(list)  # a group is all its pairs, whatever their category
    for (_, g), v in groups.items():
        all_groups[g].extend(v)
    plus_by_cat: dict[str, list[bool]] = defaultdict(list)
    for (c, _), v in groups.items():
        plus_by_cat[c].append(all(v))
    out = {"acc": acc, "acc_plus": pct(sum(all(v) for v in all_groups.values()), len(all_groups))}
    out.update({c: cats[c] for c in MMRLHF_CATEGORIES if c in cats})
    out["acc_plus_by_category"] = {c: pct(sum(v), len(v)) for c, v in plus_by_cat.items()}
    return out


BENCH_METRICS = {
    "vl_rewardbench": vl_rewardbench_metrics,
    "multimodal_rewardbench": multimodal_rewardbench_metrics,
    "mm_rlhf_rewardbench": mm_rlhf_rewardbench_metrics,
}


def swapped_view(rec: dict) -> dict:
    return {**rec, "label": rec["swapped"]["label"], "preds": rec["swapped"]["preds"]}


def position_swap_metrics(bench: str, records: list[dict]) -> Optional[dict]:
    """Beyond the paper: each pair asked in both orders (greedy, or the first sample).

    ``original`` / ``swapped``: the benchmark's metrics in each order; ``agreement``: % of pairs whose
    two predictions pick the same response; ``debiased``: the benchmark's metrics counting a pair
    right only when it is right in both orders.
    """
    recs = [r for r in records if r.get("swapped")]
    if not recs:
        return None
    fn = BENCH_METRICS[bench]

    def same_choice(r: dict) -> bool:
        a, b = primary_pred(r), primary_pred(swapped_view(r))
        # the same response is chosen when the label positions flip with the order
        return a in (1, 2) and b in (1, 2) and (a == r["label"]) == (b == r["swapped"]["label"])

    return {
        "n": len(recs),
        "original": fn(recs, primary_right),
        "swapped": fn([swapped_view(r) for r in recs], primary_right),
        "agreement": pct(sum(same_choice(r) for r in recs), len(recs)),
        "debiased": fn(recs, lambda r: primary_right(r) and primary_right(swapped_view(r))),
    }


def benchmark_metrics(bench: str, records: list[dict], ks: Optional[list[int]] = None) -> dict:
    """metrics.json's entry for one benchmark (see the module docstring)."""
    failed = sum(bool(r.get("failed")) for r in records)
    records = [r for r in records if not r.get("failed")]
    if not records:  # every request failed: nothing to score
        return {"mode": "failed", "n": 0, "failed": failed, "unparsable": 0}
    fn = BENCH_METRICS[bench]
    has_greedy = all(r.get("greedy") for r in records)
    n_samples = min((len(sample_preds(r)) for r in records), default=0)
    ks = sorted(k for k in (ks or range(1, n_samples + 1)) if 1 <= k <= n_samples)
    if not has_greedy and not n_samples:
        raise ValueError(f"{bench}: records hold no predictions")
    unparsable = sum(primary_pred(r) is None for r in records)
    out = {**fn(records, primary_right), "mode": "greedy" if has_greedy else "sample@1", "n": len(records),
           "failed": failed, "unparsable": unparsable, "unparsable_pct": pct(unparsable, len(records))}  # fmt: skip
    if ks:
        out["voting"] = {str(k): fn(records, vote_right(k)) for k in ks}
        out["any"] = {str(k): fn(records, any_right(k)) for k in ks}
        total = sum(len(sample_preds(r)) for r in records)
        out["samples_unparsable_pct"] = pct(sum(p is None for r in records for p in sample_preds(r)), total)
    if bench == "vl_rewardbench":
        # the official scorer (cal.py) leaves unparsable outputs out of the denominator; ours counts them
        # wrong (above). This is the official variant, for comparison with published numbers.
        parsed = [r for r in records if primary_pred(r) is not None]
        if parsed:
            out["official_excluding_unparsable"] = {**fn(parsed, primary_right), "n": len(parsed)}
    swap = position_swap_metrics(bench, records)
    if swap:
        out["position_swap"] = swap
    return out


def compute_metrics(records: list[dict], ks: Optional[list[int]] = None) -> dict:
    """``metrics.json``: one entry per benchmark present in ``records``."""
    by_bench: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_bench[r["benchmark"]].append(r)
    unknown = set(by_bench) - set(BENCH_METRICS)
    if unknown:
        raise ValueError(f"unknown benchmark(s) in records: {sorted(unknown)}")
    return {b: benchmark_metrics(b, recs, ks) for b, recs in by_bench.items()}
