"""Preference-pair records, images and files for the data tests (preprocess, annotate, the OpenAI client)."""

import io
import json
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image


def png(colour=(200, 0, 0), size=(16, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def pair(i, **kw):
    rec = {"id": f"p{i}", "question": f"Question {i}?", "images": [], "response_1": f"first {i}",
           "response_2": f"second {i}", "preferred": 1 + i % 2}  # fmt: skip
    rec.update(kw)
    return rec


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def read(path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def rows(n, need_of):
    """``n`` pairs whose question tells the scripted annotator how many attempts it needs (``need_of(i)``)."""
    out = []
    for i in range(n):
        good, bad = f"answer {i} (correct)", f"answer {i} wrong"
        pref = 1 + i % 2
        out.append(pair(i, question=f"Q{i} [need={need_of(i)}]", response_1=good if pref == 1 else bad,
                        response_2=bad if pref == 1 else good, preferred=pref))  # fmt: skip
    return out
