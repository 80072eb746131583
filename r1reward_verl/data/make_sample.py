"""Make the bundled sample: a few dozen preference pairs about tiny generated images (licence-clean).

    python -m preprocess.make_sample [--out r1reward_verl/data/sample_data] [--rows 36]

Writes ``pairs.jsonl`` in the generic pair format (with ``attempts`` and ``reasoning``, so it feeds
the RL, SFT and difficulty-filter paths) and ``images/*.png`` (32x32 shapes on plain backgrounds).
Deterministic: the same command writes the same bytes. The README's main job uses it by default.
"""

from __future__ import annotations

import argparse
import io
import json
import random
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / "sample_data"
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 220), "yellow": (230, 210, 30),
           "black": (15, 15, 15), "white": (245, 245, 245)}  # fmt: skip
SHAPES = ("square", "circle", "triangle")


def _png(shape: str, fg, bg) -> bytes:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (32, 32), bg)
    d = ImageDraw.Draw(im)
    if shape == "square":
        d.rectangle([8, 8, 23, 23], fill=fg)
    elif shape == "circle":
        d.ellipse([7, 7, 24, 24], fill=fg)
    else:
        d.polygon([(16, 6), (26, 25), (6, 25)], fill=fg)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def make_sample(out: Path = DEFAULT_OUT, rows: int = 36, seed: int = 0) -> Path:
    rng = random.Random(seed)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    names = list(COLOURS)
    combos = [(kind, shape, fg) for kind in range(3) for shape in SHAPES for fg in names if fg != "white"]
    if rows > len(combos):
        raise ValueError(f"at most {len(combos)} distinct sample rows")
    rng.shuffle(combos)
    records = []
    for i, (kind, shape, fg) in enumerate(combos[:rows]):
        bg = "white"
        wrong = rng.choice([n for n in names if n not in (fg, bg)])
        image = f"images/{i:03d}_{fg}_{shape}.png"
        (out / image).write_bytes(_png(shape, COLOURS[fg], COLOURS[bg]))
        if kind == 0:
            q = f"What colour is the {shape}?"
            good, bad = f"The {shape} is {fg}.", f"The {shape} is {wrong}."
        elif kind == 1:
            q = "Which shape is drawn in the picture?"
            other = rng.choice([s for s in SHAPES if s != shape])
            good, bad = f"A {fg} {shape} on a {bg} background.", f"A {fg} {other} on a {bg} background."
        else:
            q = "Describe the image briefly."
            good = f"A single {fg} {shape} centred on a plain {bg} background."
            bad = f"A crowded street with several {wrong} cars and a {shape}-shaped sign."
        preferred = rng.choice((1, 2))
        r1, r2 = (good, bad) if preferred == 1 else (bad, good)
        attempts = rng.choice(["1", "1", "2", "3", "failed"])
        reasoning = (f"Response {preferred} matches the image: it shows a {fg} {shape}. "
                     f"Response {3 - preferred} describes something that is not there. "
                     f"So Response {preferred} is better.")  # fmt: skip
        records.append({"id": f"sample-{i:03d}", "question": q, "images": [image], "response_1": r1,
                        "response_2": r2, "preferred": preferred, "source": "r1reward-verl-sample",
                        "attempts": attempts if attempts == "failed" else int(attempts), "reasoning": reasoning})  # fmt: skip
    with open(out / "pairs.jsonl", "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return out / "pairs.jsonl"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--rows", type=int, default=36)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(make_sample(Path(args.out), args.rows, args.seed))


if __name__ == "__main__":
    main()
