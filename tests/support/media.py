"""Small stand-ins for benchmark media and files, for tests and benchmarks/bench_eval.py (not in the package).

The benchmark files we have carry text and labels only (their images and videos are not
redistributed): ``make_media`` draws a tiny image at every path a file names, and a few frames in
every video directory. ``write_fixture_files`` writes a handful of pairs in each benchmark's
published format, with their media.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

from r1reward_verl.data.records import iter_raw_rows


def _png(seed: str, size: int = 28) -> bytes:
    from PIL import Image

    h = hashlib.sha1(seed.encode()).digest()
    img = Image.new("RGB", (size, size), (h[0], h[1], h[2]))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def make_media(path: str | Path, root: str | Path, frames: int = 4, limit: int | None = None) -> int:
    """Draw every image / video-frame directory that the first ``limit`` records of ``path`` name, under ``root``."""
    root = Path(root)
    made = 0
    for n, raw in enumerate(iter_raw_rows(str(path))):
        rec = raw.data
        if limit is not None and n >= limit:
            break
        if not isinstance(rec, dict):
            continue
        for key in ("image", "Image"):
            if isinstance(rec.get(key), str) and rec[key]:
                p = root / rec[key]
                if not p.exists():
                    p.parent.mkdir(parents=True, exist_ok=True)
                    p.write_bytes(_png(rec[key]))
                    made += 1
        if isinstance(rec.get("video"), str) and rec["video"]:
            d = root / rec["video"]
            d.mkdir(parents=True, exist_ok=True)
            for i in range(frames):
                f = d / f"frame_{i:04d}.jpg"
                if not f.exists():
                    from PIL import Image

                    Image.open(io.BytesIO(_png(f"{rec['video']}/{i}"))).save(f, format="JPEG")
                    made += 1
    return made


def write_fixture_files(directory: str | Path) -> dict[str, Path]:
    """A few pairs per benchmark in their published formats, media included. Returns {format: file}."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    files = {}
    # VL-RewardBench, the authors' jsonl (mixed-case ids as in the real file)
    vl = [
        {"id": "RLAIF-V-14", "prompt": "What is in the picture?", "chosen": "A red square.", "rejected": "A blue cat.",
         "image": "vl/img/a.png"},
        {"id": "hallucination_pair-7", "prompt": "Describe it.", "chosen": "A plain square.", "rejected": "A crowd.",
         "image": "vl/img/b.png"},
        {"id": "mathverse_12", "prompt": "Solve for x.", "chosen": "x = 2", "rejected": "x = 5", "image": "vl/img/c.png"},
        {"id": "wildvision_3", "prompt": "What colour?", "chosen": "Green.", "rejected": "Purple.", "image": "vl/img/d.png"},
    ]  # fmt: skip
    files["vl_rewardbench_jsonl"] = d / "vl_rewardbench.jsonl"
    files["vl_rewardbench_jsonl"].write_text("".join(json.dumps(r) + "\n" for r in vl))
    # VL-RewardBench, the official HF parquet (images as bytes; human_ranking [0, 1] = first preferred)
    rows = [{"id": "mmmu_pro_1", "query": "Which option?", "response": ["B, because ...", "A, because ..."],
             "image": {"bytes": _png("p1"), "path": "p1.png"}, "human_ranking": [1, 0]},
            {"id": "vlfeedback_9", "query": "Caption it.", "response": ["A small square.", "A busy street."],
             "image": {"bytes": _png("p2"), "path": "p2.png"}, "human_ranking": [0, 1]}]  # fmt: skip
    files["vl_rewardbench_parquet"] = d / "vl_rewardbench.parquet"
    pq.write_table(pa.Table.from_pylist(rows), files["vl_rewardbench_parquet"])
    # Multimodal RewardBench, all_data.json
    mmrb = [
        {"ID": "math_001", "Text": "2+2?", "Image": "images/m1.png", "Output1": "4", "Output2": "5", "Better": "Output1",
         "Category": "reasoning"},
        {"ID": "code_002", "Text": "Fix the bug.", "Image": "images/m2.png", "Output1": "Use i-1.", "Output2": "Use i+1.",
         "Better": "Output2", "Category": "reasoning"},
        {"ID": "pairs_003", "Text": "Who is the doctor?", "Image": "images/m3.png", "Output1": "Cannot tell.",
         "Output2": "The man.", "Better": "Output1", "Category": "safety"},
        {"ID": "vqa_004", "Text": "How many?", "Image": "images/m4.png", "Output1": "Three.", "Output2": "Two.",
         "Better": "Output2", "Category": "vqa"},
        {"ID": "cor_005", "Text": "Describe.", "Image": "images/m5.png", "Output1": "A square.", "Output2": "A dog.",
         "Better": "Output1", "Category": "open_generation/correctness_task"},
    ]  # fmt: skip
    files["multimodal_rewardbench"] = d / "all_data.json"
    files["multimodal_rewardbench"].write_text(json.dumps(mmrb))
    # MM-RLHF-RewardBench jsonl: groups share an id; a video is a directory of frames
    mm = [
        {"id": "g1", "image": "mcq/1.png", "prompt": "Pick A or B.", "chosen": "A", "rejected": "B"},
        {"id": "g1", "image": "mcq/1.png", "prompt": "Pick A or B.", "chosen": "A", "rejected": "C"},
        {"id": "g2", "image": "long/2.png", "prompt": "Explain.", "chosen": "Because ...", "rejected": "No."},
        {"id": "g3", "video": "video/v3", "prompt": "What happens?", "chosen": "A ball rolls.", "rejected": "Nothing."},
        {"id": "g3", "video": "video/v3", "prompt": "What happens?", "chosen": "A ball rolls.", "rejected": "A car."},
    ]  # fmt: skip
    files["mm_rlhf_rewardbench"] = d / "mm_rlhf_rewardbench.jsonl"
    files["mm_rlhf_rewardbench"].write_text("".join(json.dumps(r) + "\n" for r in mm))
    for key in ("vl_rewardbench_jsonl", "multimodal_rewardbench", "mm_rlhf_rewardbench"):
        make_media(files[key], d, frames=40 if key == "mm_rlhf_rewardbench" else 4)
    return files
