"""The miniature's held-out benchmark, read for the scalar reward model's tests and benchmarks/bt_schedule.py."""

from __future__ import annotations

from pathlib import Path


def mirrored_pairs(heldout: Path) -> list:
    """Held-out pairs matched two by two: same question, same two responses, opposite labels (the images differ).
    A text-only scorer is right on at most one of each two."""
    from r1reward_verl.eval.loaders import load_benchmark

    pairs = load_benchmark("vl_rewardbench", heldout / "vl_rewardbench.jsonl", media_root=heldout).pairs
    by_text: dict = {}
    for p in pairs:
        by_text.setdefault((p.question, frozenset((p.chosen, p.rejected))), []).append(p)
    out = []
    for group in by_text.values():
        wins_a = [p for p in group if p.chosen == sorted((p.chosen, p.rejected))[0]]
        wins_b = [p for p in group if p not in wins_a]
        out += [x for ab in zip(wins_a, wins_b) for x in ab]
    return out


COLOURS = ("red", "blue", "green", "yellow")


def colour_candidates(colour: str) -> list[str]:
    """Four answers to a held-out item's question, one of them right: "The shape is <colour>." for the four
    :data:`COLOURS`, the item's own colour in place of the last if it is not among them."""
    names = COLOURS if colour in COLOURS else (*COLOURS[:3], colour)
    return [f"The shape is {c}." for c in names]


def pair_accuracy(scorer, pairs, image_of=None) -> float:
    """The share of ``pairs`` whose chosen response ``scorer`` (a ``ScalarRewardModel``) scores above the rejected,
    each shown ``image_of(pair)`` (default its own image)."""
    image_of = image_of or (lambda p: p.images[0])
    s = scorer.score([(p.question, [image_of(p)], r) for p in pairs for r in (p.chosen, p.rejected)])
    return sum(s[2 * i] > s[2 * i + 1] for i in range(len(pairs))) / len(pairs)
