"""A learnable synthetic multimodal preference task ("the paper in miniature"), generated offline and seeded.

    python -m preprocess.synth --out DIR --n-train N --n-heldout M --seed S [--hard-frac 0.5]
        [--heldout-hard-frac 0.5] [--size 56] [--reasoning-on easy|all] [--force]
    python -m r1reward_verl.demo.scoring runs/eval/items.jsonl       # evaluator output -> accuracy, easy vs hard

The task: a ``size`` x ``size`` PIL image (56 -> 4 image tokens with the tiny model's processor) of one
shape (circle, square, triangle; random size and position; fill colour jittered +-10 per channel) on
a light grey background; the question asks for its colour; the two responses name the true colour
and a wrong one. Colour, not shape, carries the task (shapes are barely visible in 4 image tokens).

Difficulty (R1-Reward's split by annotator attempts, §4.3): a pair is *hard* when its two colours
are a confusable pair (:data:`HARD_PAIRS`: neighbours on the colour wheel, RGB distance < 120:
orange/yellow, green/teal, red/orange, teal/blue, blue/purple, purple/pink) and *easy* when they are
far apart (RGB distance >= :data:`EASY_MIN_DISTANCE`); pairs in between are never drawn. Easy pairs get
``attempts`` 1, hard ones 2, 3 or "failed" (seeded), so ``preprocess.pairs --difficulty-filter`` keeps
exactly the hard ones. Within every colour pair the true colour is either member with probability
1/2, so the pair itself never tells the answer.

Outputs (``DIR``):

- ``pairs.jsonl``: the generic pair format (``r1reward_verl.data.records``): ``id`` (``train-easy-000000``,
  ``train-hard-000001``, ...), ``question``, ``images`` (relative paths ``images/<id>.png``),
  ``response_1``, ``response_2``, ``preferred``, ``source``, ``attempts``, ``reasoning`` (easy rows only,
  or also hard rows with attempts 2/3 with ``--reasoning-on all``: the paper's annotator gave no
  reasoning where it failed), and ``meta`` (colour, wrong colour, shape, difficulty, a pixel ``probe``
  inside the shape; ignored by the readers). Labels: exactly 1:1 (+-1) within easy and within hard.
- ``images/<id>.png``, ``summary.json`` (counts).
- ``heldout/``: a benchmark from the same generator, drawn before the training set from its own seed
  stream (it depends only on ``--seed``, ``--n-heldout``, ``--heldout-hard-frac``, ``--size``), with
  ids ``easy-000000`` / ``hard-000001`` and no image equal to a training image; written in the three
  benchmarks' published formats, which ``r1reward_verl.eval`` reads with its default media root:
  ``vl_rewardbench.jsonl`` (``id, prompt, chosen, rejected, image``), ``all_data.json`` (Multimodal
  RewardBench: ``ID, Text, Image, Output1, Output2, Better, Category`` = ``vqa``),
  ``mm_rlhf_rewardbench.jsonl`` (``id, prompt, chosen, rejected, image`` under ``short/``, which is
  its category; one pair per group), plus ``pairs.jsonl`` (generic format, with ``meta``),
  ``images/``, ``short/`` (the same images) and ``summary.json``. The evaluator's ``items.jsonl``
  keeps the ids, so :func:`r1reward_verl.demo.scoring.accuracy_by_difficulty` splits its accuracy by prefix.

The reasoning names each response's colour with its number and then copies the number after the
image's colour: ``The image shows a red circle. The responses: orange 1, red 2. The image shows red 2.
So Response 2 is better.`` Verdict forms (``Response 1 says orange, which is wrong. ...``, or
``..., the image red, so wrong.``) need a comparison of two colour words, which the tiny head_dim-32
models never learned in 700-1,150 SFT steps: they named the colour and copied both responses right,
then wrote the same verdict for every pair.

Tokenizer: :data:`TASK_WORDS` and :func:`corpus` are the task's vocabulary and sentences, for
training the tiny model's BPE on them (``python -m r1reward_verl.tiny --task-corpus synth``).

Same arguments -> byte-identical files. Only PIL and the standard library.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import random
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Optional, Union

SOURCE = "r1reward-verl-synth"
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "orange": (240, 130, 25),
    "yellow": (235, 215, 35),
    "green": (40, 165, 55),
    "teal": (25, 150, 150),
    "blue": (35, 75, 215),
    "purple": (135, 50, 190),
    "pink": (235, 110, 175),
}
SHAPES = ("circle", "square", "triangle")
# confusable colours: neighbours on the colour wheel, RGB distance 86..118
HARD_PAIRS = (("orange", "yellow"), ("green", "teal"), ("red", "orange"), ("teal", "blue"), ("blue", "purple"),
              ("purple", "pink"))  # fmt: skip
EASY_MIN_DISTANCE = 170.0  # easy pairs: 175..303; orange/pink, teal/purple, red/pink (151..160) are never drawn
JITTER = 10  # +- per channel of the fill colour
# side of the shape's box as a fraction of the image side: most of the 4 image tokens at 56 px are the shape's
# colour. With 0.36-0.72 the 128-wide head_dim-32 model named the colour right on only ~half the pairs after
# its cold start, and RL could not fix that (RESULTS.md: an outcome reward blames the copy step too)
SHAPE_SCALE = (0.75, 0.92)
BACKGROUND = (225, 250)  # light grey level range
HARD_ATTEMPTS = (2, 3, "failed")
QUESTIONS = (  # (question, response) templates
    ("What colour is the shape?", "The shape is {colour}."),
    ("What colour is the {shape}?", "The {shape} is {colour}."),
)


def colour_distance(a: str, b: str) -> float:
    return math.dist(PALETTE[a], PALETTE[b])


def _pair_key(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


_HARD = {_pair_key(a, b) for a, b in HARD_PAIRS}
EASY_PAIRS = tuple((a, b) for a, b in combinations(PALETTE, 2)
                   if _pair_key(a, b) not in _HARD and colour_distance(a, b) >= EASY_MIN_DISTANCE)  # fmt: skip


def difficulty_of(a: str, b: str) -> Optional[str]:
    """"hard", "easy" or None (a pair the generator never draws)."""
    if _pair_key(a, b) in _HARD:
        return "hard"
    return "easy" if colour_distance(a, b) >= EASY_MIN_DISTANCE else None


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def reasoning_text(colour: str, shape: str, said_1: str, said_2: str, copied: Optional[int] = None) -> str:
    """The templated cold-start reasoning: what the image shows, each response's colour with its number, the
    image's colour with the number of the response that says it, the conclusion. Every word is one token
    of the task tokenizer; the number after the second mention of the colour is a copy of the number after
    its first mention (what a small transformer learns readily), not a comparison of two colours.
    ``copied``: the number written there instead (the other one: the copy step gone wrong)."""
    better = copied or (1 if said_1 == colour else 2)
    return (f"The image shows {_article(colour)} {colour} {shape}. The responses: {said_1} 1, {said_2} 2. "
            f"The image shows {colour} {better}. So Response {better} is better.")  # fmt: skip


def critique_text(colour: str, shape: str, said: str) -> str:
    """The templated critique of one response (critic-then-score, ``r1reward_verl.data.outputs``): what the image
    shows and what the response says; the comparison is left to the scorer."""
    return f"The image shows {_article(colour)} {colour} {shape}. The response says {said}."


REASONING_RE = re.compile(
    r"^The image shows an? (?P<colour>\w+) (?P<shape>\w+)\. The responses: (?P<said_1>\w+) 1, (?P<said_2>\w+) 2\. "
    r"The image shows (?P=colour) (?P<match>[12])\. So Response (?P<better>(?P=match)) is better\.$"
)


def corpus() -> list[str]:
    """Every sentence form of the task over all colours and shapes (deterministic), for a tokenizer."""
    lines = []
    for shape in SHAPES:
        for q, r in QUESTIONS:
            lines.append(q.format(shape=shape))
            lines += [r.format(shape=shape, colour=c) for c in PALETTE]
        for colour in PALETTE:
            for wrong in PALETTE:
                if wrong != colour:
                    lines.append(reasoning_text(colour, shape, colour, wrong))
                    lines.append(reasoning_text(colour, shape, wrong, colour))
    return lines


TASK_WORDS = tuple(sorted(set(re.findall(r"[A-Za-z]+", " ".join(corpus())))))


@dataclass
class Item:
    id: str
    difficulty: str
    colour: str
    wrong: str
    shape: str
    template: int
    preferred: int
    attempts: Union[int, str]
    png: bytes
    probe: tuple[int, int]
    fill: tuple[int, int, int]

    @property
    def question(self) -> str:
        return QUESTIONS[self.template][0].format(shape=self.shape)

    def response(self, colour: str) -> str:
        return QUESTIONS[self.template][1].format(shape=self.shape, colour=colour)

    @property
    def responses(self) -> tuple[str, str]:
        good, bad = self.response(self.colour), self.response(self.wrong)
        return (good, bad) if self.preferred == 1 else (bad, good)

    @property
    def said(self) -> tuple[str, str]:
        return (self.colour, self.wrong) if self.preferred == 1 else (self.wrong, self.colour)

    def reasoning(self) -> str:
        return reasoning_text(self.colour, self.shape, *self.said)

    def meta(self) -> dict:
        return {"difficulty": self.difficulty, "colour": self.colour, "wrong": self.wrong, "shape": self.shape,
                "fill": list(self.fill), "probe": list(self.probe)}  # fmt: skip


def draw(shape: str, fill: tuple[int, int, int], background: int, size: int, rng: random.Random):
    """One PNG (bytes) of ``shape`` and a pixel inside it; sizes scale with ``size`` (56 -> 42..52 px)."""
    from PIL import Image, ImageDraw

    side = rng.randint(round(size * SHAPE_SCALE[0]), round(size * SHAPE_SCALE[1]))
    margin = max(1, size // 28)
    x0, y0 = rng.randint(margin, size - margin - side), rng.randint(margin, size - margin - side)
    x1, y1 = x0 + side - 1, y0 + side - 1
    im = Image.new("RGB", (size, size), (background,) * 3)
    d = ImageDraw.Draw(im)
    if shape == "square":
        d.rectangle([x0, y0, x1, y1], fill=fill)
        probe = ((x0 + x1) // 2, (y0 + y1) // 2)
    elif shape == "circle":
        d.ellipse([x0, y0, x1, y1], fill=fill)
        probe = ((x0 + x1) // 2, (y0 + y1) // 2)
    else:
        d.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)
        probe = ((x0 + x1) // 2, y0 + (2 * (y1 - y0)) // 3)  # the centroid
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False)
    return buf.getvalue(), probe, hashlib.blake2b(im.tobytes(), digest_size=16).digest()


def _plan(n: int, hard_frac: float, rng: random.Random) -> list[tuple[str, int]]:
    """(difficulty, preferred) per index: exactly round(n * hard_frac) hard, labels 1:1 (+-1) in each stratum."""
    if not 0.0 <= hard_frac <= 1.0:
        raise ValueError(f"hard fraction must be in [0, 1], got {hard_frac}")
    n_hard = round(n * hard_frac)
    plan = []
    for difficulty, m in (("easy", n - n_hard), ("hard", n_hard)):
        first = rng.choice((1, 2))  # which label gets the extra row when m is odd
        labels = [first if i % 2 == 0 else 3 - first for i in range(m)]
        plan += [(difficulty, lab) for lab in labels]
    rng.shuffle(plan)
    return plan


def generate(n: int, *, seed: int, stream: str, hard_frac: float = 0.5, size: int = 56, id_prefix: str = "",
             seen: Optional[set] = None) -> list[Item]:  # fmt: skip
    """``n`` items from the seed stream ``f"{seed}:{stream}"``. ``seen``: pixel digests that must not
    recur (updated): an image equal to one already made is drawn again, so every image is unique."""
    if size < 28 or size % 28:
        raise ValueError(f"size must be a multiple of 28 (one Qwen2.5-VL image token per 28x28), got {size}")
    seen = set() if seen is None else seen
    plan = _plan(n, hard_frac, random.Random(f"{seed}:{stream}:plan"))
    items = []
    for i, (difficulty, preferred) in enumerate(plan):
        rng = random.Random(f"{seed}:{stream}:{i}")
        pairs = HARD_PAIRS if difficulty == "hard" else EASY_PAIRS
        colour, wrong = rng.choice(pairs)
        if rng.random() < 0.5:
            colour, wrong = wrong, colour
        shape, template = rng.choice(SHAPES), rng.randrange(len(QUESTIONS))
        attempts = 1 if difficulty == "easy" else rng.choice(HARD_ATTEMPTS)
        while True:
            fill = tuple(min(255, max(0, c + rng.randint(-JITTER, JITTER))) for c in PALETTE[colour])
            png, probe, digest = draw(shape, fill, rng.randint(*BACKGROUND), size, rng)
            if digest not in seen:
                seen.add(digest)
                break
        items.append(Item(f"{id_prefix}{difficulty}-{i:06d}", difficulty, colour, wrong, shape, template, preferred,
                          attempts, png, probe, fill))  # fmt: skip
    return items


def pair_record(item: Item, image: str, with_reasoning: bool) -> dict:
    r1, r2 = item.responses
    rec = {"id": item.id, "question": item.question, "images": [image], "response_1": r1, "response_2": r2,
           "preferred": item.preferred, "source": SOURCE, "attempts": item.attempts}  # fmt: skip
    if with_reasoning:
        rec["reasoning"] = item.reasoning()
    rec["meta"] = item.meta()
    return rec


def _has_reasoning(item: Item, reasoning_on: str) -> bool:
    return item.difficulty == "easy" or (reasoning_on == "all" and item.attempts != "failed")


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _counts(items: list[Item]) -> dict:
    by = {d: [it for it in items if it.difficulty == d] for d in ("easy", "hard")}
    return {
        "pairs": len(items),
        "by_difficulty": {d: len(v) for d, v in by.items()},
        "labels_by_difficulty": {d: {str(k): n for k, n in sorted(Counter(it.preferred for it in v).items())}
                                 for d, v in by.items()},  # fmt: skip
        "attempts": {str(k): n for k, n in sorted(Counter(str(it.attempts) for it in items).items())},
        "true_colours": dict(sorted(Counter(it.colour for it in items).items())),
        "colour_pairs": {"/".join(k): n for k, n in sorted(Counter(_pair_key(it.colour, it.wrong) for it in items).items())},
        "shapes": dict(sorted(Counter(it.shape for it in items).items())),
    }


OUTPUTS = ("pairs.jsonl", "summary.json", "images", "heldout")


def write_dataset(out: Union[str, Path], n_train: int, n_heldout: int, seed: int, *, hard_frac: float = 0.5,
                  heldout_hard_frac: float = 0.5, size: int = 56, reasoning_on: str = "easy",
                  force: bool = False) -> dict:  # fmt: skip
    """Write the training pairs and the held-out benchmark under ``out`` (see the module docstring)."""
    if reasoning_on not in ("easy", "all"):
        raise ValueError(f"reasoning_on must be 'easy' or 'all', got {reasoning_on!r}")
    out = Path(out)
    present = [name for name in OUTPUTS if (out / name).exists()]
    if present and not force:
        raise FileExistsError(f"{out} already holds {', '.join(present)}; use another --out or --force to replace them")
    for name in present:
        p = out / name
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    params = {"seed": seed, "n_train": n_train, "n_heldout": n_heldout, "hard_frac": hard_frac,
              "heldout_hard_frac": heldout_hard_frac, "size": size, "reasoning_on": reasoning_on}  # fmt: skip

    seen: set = set()
    heldout = generate(n_heldout, seed=seed, stream="heldout", hard_frac=heldout_hard_frac, size=size, seen=seen)
    train = generate(n_train, seed=seed, stream="train", hard_frac=hard_frac, size=size, id_prefix="train-", seen=seen)

    (out / "images").mkdir(parents=True)
    rows = []
    for it in train:
        (out / "images" / f"{it.id}.png").write_bytes(it.png)
        rows.append(pair_record(it, f"images/{it.id}.png", _has_reasoning(it, reasoning_on)))
    _write_jsonl(out / "pairs.jsonl", rows)
    train_summary = {"params": params, **_counts(train), "reasoning_rows": sum("reasoning" in r for r in rows),
                     "source": SOURCE}  # fmt: skip
    _write_json(out / "summary.json", train_summary)

    h = out / "heldout"
    (h / "images").mkdir(parents=True)
    (h / "short").mkdir()
    vl, mmrb, mmrlhf, generic = [], [], [], []
    for it in heldout:
        for sub in ("images", "short"):
            (h / sub / f"{it.id}.png").write_bytes(it.png)
        good, bad = it.response(it.colour), it.response(it.wrong)
        r1, r2 = it.responses
        vl.append({"id": it.id, "prompt": it.question, "chosen": good, "rejected": bad, "image": f"images/{it.id}.png"})
        mmrb.append({"ID": it.id, "Text": it.question, "Image": f"images/{it.id}.png", "Output1": r1, "Output2": r2,
                     "Better": f"Output{it.preferred}", "Category": "vqa"})  # fmt: skip
        mmrlhf.append({"id": it.id, "image": f"short/{it.id}.png", "prompt": it.question, "chosen": good,
                       "rejected": bad})  # fmt: skip
        generic.append(pair_record(it, f"images/{it.id}.png", _has_reasoning(it, reasoning_on)))
    _write_jsonl(h / "vl_rewardbench.jsonl", vl)
    _write_json(h / "all_data.json", mmrb)
    _write_jsonl(h / "mm_rlhf_rewardbench.jsonl", mmrlhf)
    _write_jsonl(h / "pairs.jsonl", generic)
    heldout_summary = {
        "params": params,
        **_counts(heldout),
        "id_prefix": {"easy": "easy-", "hard": "hard-"},
        "files": {
            "vl_rewardbench": {"file": "vl_rewardbench.jsonl", "rows": len(vl), "category": "general"},
            "multimodal_rewardbench": {"file": "all_data.json", "rows": len(mmrb), "category": "vqa"},
            "mm_rlhf_rewardbench": {"file": "mm_rlhf_rewardbench.jsonl", "rows": len(mmrlhf), "category": "short",
                                    "groups": len(mmrlhf)},  # fmt: skip
            "pairs": {"file": "pairs.jsonl", "rows": len(generic)},
        },
        "disjoint_from_train": {"ids": True, "images": True},
        "source": SOURCE,
    }
    _write_json(h / "summary.json", heldout_summary)
    return {"train": train_summary, "heldout": heldout_summary}


def difficulty_of_id(item_id: str) -> Optional[str]:
    """"easy"/"hard" from a held-out (``easy-…``/``hard-…``) or training (``train-easy-…``) id, else None."""
    s = item_id[len("train-"):] if item_id.startswith("train-") else item_id
    d = s.split("-", 1)[0]
    return d if d in ("easy", "hard") else None


def read_meta(pairs_jsonl: Union[str, Path]) -> dict[str, dict]:
    """``{id: meta}`` of a generic ``pairs.jsonl`` written by :func:`write_dataset`."""
    with open(pairs_jsonl, encoding="utf-8") as f:
        return {row["id"]: row["meta"] for row in map(json.loads, f)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="output directory (pairs.jsonl, images/, summary.json, heldout/)")
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-heldout", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hard-frac", type=float, default=0.5, help="share of hard (confusable-colour) training pairs")
    parser.add_argument("--heldout-hard-frac", type=float, default=0.5)
    parser.add_argument("--size", type=int, default=56, help="image side in pixels, a multiple of 28 (56 -> 4 tokens)")
    parser.add_argument("--reasoning-on", choices=["easy", "all"], default="easy",
                        help="rows that carry a cold-start reasoning: easy ones, or also hard ones with attempts 2/3")  # fmt: skip
    parser.add_argument("--force", action="store_true", help="replace earlier outputs in --out")
    args = parser.parse_args(argv)
    if not args.out:
        parser.error("--out is required")
    try:
        s = write_dataset(args.out, args.n_train, args.n_heldout, args.seed, hard_frac=args.hard_frac,
                          heldout_hard_frac=args.heldout_hard_frac, size=args.size, reasoning_on=args.reasoning_on,
                          force=args.force)  # fmt: skip
    except (FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t, h = s["train"], s["heldout"]
    print(f"train: {t['pairs']} pairs {t['by_difficulty']}, labels {t['labels_by_difficulty']}, "
          f"{t['reasoning_rows']} with reasoning -> {Path(args.out) / 'pairs.jsonl'}; held-out: {h['pairs']} pairs "
          f"{h['by_difficulty']} -> {Path(args.out) / 'heldout'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
