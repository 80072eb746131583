"""Streaming converter vs a load-everything pandas baseline, from one run: rows/s and peak RSS.

    .venv/bin/python benchmarks/bench_preprocess.py [--quick | --rows 200000 --small-rows 50000 --images 2000 --workdir /tmp/r1r-bench]

Generates pair-format JSONL with small PNG images (a pool of ``--images`` files, each referenced by
several pairs, as in real preference sets where one image has several response pairs), then runs,
each in its own process so peak RSS is its own:
* ours: ``r1reward_verl.data.pairs.convert`` as the CLI runs it by default (streaming, column-wise row
  groups, a verified-image cache by path), and once more with ``--workers 2``;
* baseline: ``pandas.read_json(lines=True)`` of the whole file, the same per-row conversion
  (``r1reward_verl.data.records.normalize_pair`` + ``r1reward_verl.data.pairs.rl_row``) over all rows in memory,
  reading and checking every image it meets (no cache), then ``DataFrame.to_parquet``.
RSS of ours is the main process (the one that grows with the input); each worker holds one chunk.
Prints rows/s and peak RSS of both and their ratios at ``--rows``, and ours at ``--small-rows`` to
show that memory stays flat. Goals: >= 3x faster, peak RSS <= 1.5 GB at 200,000 rows.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

BASELINE = r"""
import sys, time, resource
from pathlib import Path
import pandas as pd
sys.path.insert(0, sys.argv[3])
from r1reward_verl.data import images
from r1reward_verl.data.records import normalize_pair
from r1reward_verl.data.pairs import rl_row, RL_SCHEMA
images.FILE_IMAGES.max_bytes = 0  # the straightforward version reads and checks every image it meets
import pyarrow as pa
t0 = time.perf_counter()
src = Path(sys.argv[1])
df = pd.read_json(src, lines=True, dtype=False)
rows = [rl_row(normalize_pair(rec, src.parent), i, "train", False, "r1reward")
        for i, rec in enumerate(df.to_dict("records"))]
out = pd.DataFrame(rows)
pa.Table.from_pandas(out, schema=RL_SCHEMA, preserve_index=False)  # same schema as ours
out.to_parquet(sys.argv[2])
print(len(rows), time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

OURS = r"""
import sys, time, resource
sys.path.insert(0, sys.argv[3])
from r1reward_verl.data.pairs import convert
t0 = time.perf_counter()
s = convert([sys.argv[1]], sys.argv[2], val_fraction=0.0, progress=False, workers=int(sys.argv[4]))
print(s["written"], time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def make_data(workdir: Path, rows: int, n_images: int, seed: int = 0) -> Path:
    from PIL import Image

    rng = random.Random(seed)
    img_dir = workdir / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n_images):
        p = img_dir / f"{i:05d}.png"
        if not p.exists():
            buf = io.BytesIO()
            size = rng.choice([(24, 24), (32, 32), (48, 32)])
            Image.new("RGB", size, (rng.randrange(256), rng.randrange(256), rng.randrange(256))).save(buf, "PNG")
            p.write_bytes(buf.getvalue())
    path = workdir / f"pairs_{rows}.jsonl"
    if path.exists():
        return path
    words = "the image shows a red blue green square circle person car street table chart text number".split()
    with open(path, "w") as f:
        for i in range(rows):
            q = f"Question {i}: " + " ".join(rng.choice(words) for _ in range(12)) + "?"
            r1 = " ".join(rng.choice(words) for _ in range(rng.randint(20, 80)))
            r2 = " ".join(rng.choice(words) for _ in range(rng.randint(20, 80)))
            f.write(json.dumps({"id": f"b{i}", "question": q, "images": [f"images/{rng.randrange(n_images):05d}.png"],
                                "response_1": r1, "response_2": r2, "preferred": rng.choice((1, 2)),
                                "source": "bench"}) + "\n")  # fmt: skip
    return path


def run(script: str, src: Path, out: Path, workers: int = 1) -> tuple[int, float, float]:
    res = subprocess.run([sys.executable, "-c", script, str(src), str(out), str(REPO), str(workers)], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})  # fmt: skip
    n, secs, rss_kb = res.stdout.strip().splitlines()[-1].split()
    return int(n), float(secs), int(rss_kb) / 1024  # MiB


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--small-rows", type=int, default=50_000)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workdir", default="/tmp/r1r-bench")
    parser.add_argument("--quick", action="store_true",
                        help="smallest sizes: a smoke run whose numbers mean nothing (tests/test_benchmarks.py runs it)")
    args = parser.parse_args(argv)
    if args.quick:  # the small sizes become the defaults; sizes given explicitly still win
        parser.set_defaults(**{"rows": 1000, "small_rows": 250, "images": 20})
        args = parser.parse_args(argv)
    wd = Path(args.workdir)
    wd.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    big, small = make_data(wd, args.rows, args.images), make_data(wd, args.small_rows, args.images)
    print(f"data: {big.name} ({big.stat().st_size / 2**20:.0f} MiB), {small.name}, {args.images} images "
          f"({time.perf_counter() - t0:.0f} s to generate)")  # fmt: skip

    n_o, s_o, m_o = run(OURS, big, wd / "ours", workers=1)
    n_2, s_2, m_2 = run(OURS, big, wd / "ours2", workers=2)
    n_b, s_b, m_b = run(BASELINE, big, wd / "baseline.parquet")
    n_s, s_s, m_s = run(OURS, small, wd / "ours_small", workers=1)
    assert n_o == n_b == n_2 == args.rows and n_s == args.small_rows
    print(f"ours     {args.rows:>7} rows: {n_o / s_o:>9,.0f} rows/s, peak RSS {m_o:7.0f} MiB")
    print(f"ours, --workers 2 {args.rows:>7} rows: {n_2 / s_2:>9,.0f} rows/s, peak RSS {m_2:7.0f} MiB (main process)")
    print(f"baseline {args.rows:>7} rows: {n_b / s_b:>9,.0f} rows/s, peak RSS {m_b:7.0f} MiB")
    print(f"ours     {args.small_rows:>7} rows: {n_s / s_s:>9,.0f} rows/s, peak RSS {m_s:7.0f} MiB")
    print(f"speed ours/baseline: {s_b / s_o:.2f}x, with --workers 2 {s_b / s_2:.2f}x (goal >= 3x); "
          f"peak RSS baseline/ours: {m_b / m_o:.2f}x; "
          f"ours at {args.rows} <= 1.5 GB: {m_o <= 1536}; ours RSS {args.rows}/{args.small_rows} rows: {m_o / m_s:.2f}x")


if __name__ == "__main__":
    main()
