"""Loaders for the three multimodal reward benchmarks, normalised to one pair record.

Formats read (each from local files, through ``r1reward_verl.data.records.iter_raw_rows``; ``.gz`` works for
every JSON/JSONL form):

- VL-RewardBench: the jsonl the R1-Reward authors distribute (``id, prompt, chosen, rejected, image``
  with ``image`` a path relative to the media root), or the official HF parquet
  (``MMInstruction/VL-RewardBench``: ``id, query, response`` (2 strings), ``image`` {bytes, path},
  ``human_ranking``, rank 0 = better). Category from the id prefix, case-insensitive:
  rlaif/rlhf/hallucination -> hallucination, mathverse/mmmu -> reasoning, else general.
- Multimodal RewardBench (``facebookresearch/multimodal_rewardbench``, ``all_data.json`` as JSON list
  or JSONL): ``ID, Text, Image, Output1, Output2, Better, Category``; reported categories:
  correctness, preference, knowledge, math / coding (reasoning split by ``ID`` prefix ``math``),
  bias / toxicity (safety split by ``ID`` prefix ``pairs``), vqa.
- MM-RLHF-RewardBench (the authors' jsonl): ``id, prompt, chosen, rejected, image`` or ``video``
  (a directory of frames); category = the first of mcq/long/short/safety/video in the media path;
  ``id`` repeats within a group (Acc+). Videos: up to ``max_frames`` frames (default 32, the
  reference scripts' number) evenly spaced over the sorted file names, given to the model as a video.

Bad input raises :class:`BadInput` (one line; ``python -m r1reward_verl.eval`` prints it and exits 2).
A bad row (missing or mistyped field, label, unknown category, missing or undecodable media, a
directory given as an image, duplicate item) stops with ``FILE: row N: reason: detail``, or with
``skip_invalid`` is skipped and counted by reason; ``read == len(pairs) + sum(rejected)`` always. A
file that is missing, unreadable, empty or in no benchmark's format stops whatever ``skip_invalid``.
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from r1reward_verl.data.records import BadRow, InvalidInput, iter_raw_rows

BENCHMARKS = ("vl_rewardbench", "multimodal_rewardbench", "mm_rlhf_rewardbench")
VL_CATEGORIES = ("general", "hallucination", "reasoning")
MMRB_CATEGORIES = ("correctness", "preference", "knowledge", "math", "coding", "bias", "toxicity", "vqa")
MMRLHF_CATEGORIES = ("mcq", "long", "short", "safety", "video")
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


class BadInput(InvalidInput):
    """A file, row or setting the evaluation cannot use, said in one line naming it (a UserError and a ValueError,
    like the readers' InvalidInput it extends)."""


@dataclass
class EvalPair:
    """One benchmark pair, before it is shown to a model (``chosen`` is the human-preferred response)."""

    benchmark: str
    id: str
    key: str  # unique within the benchmark: hash of id, question and both responses
    category: str
    group: str  # Acc+ group (MM-RLHF-RewardBench); the id elsewhere
    question: str
    chosen: str
    rejected: str
    images: list[Any] = field(default_factory=list)  # absolute paths or bytes
    video: Optional[list[str]] = None  # frame paths, in order
    source: str = ""
    row: int = 0


@dataclass
class Loaded:
    pairs: list[EvalPair]
    read: int
    rejected: Counter
    file_sha256: str

    def summary(self) -> dict:
        return {"read": self.read, "loaded": len(self.pairs), "rejected_by_reason": dict(self.rejected),
                "sha256": self.file_sha256}  # fmt: skip


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def item_key(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


def _req(rec: dict, *names: str) -> Any:
    for n in names:
        if n in rec and rec[n] is not None:
            return rec[n]
    raise BadRow("missing_field", f"needs {' or '.join(repr(n) for n in names)}")


def _text(rec: dict, *names: str) -> str:
    v = _req(rec, *names)
    if not isinstance(v, str) or not v.strip():
        raise BadRow("empty_field", f"{names[0]} must be a non-empty string")
    return v


def _path(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRow("bad_field", f"{name} must be a path (a non-empty string), got {value!r}")
    return value


def _media(path: str, root: Path) -> str:
    p = Path(path)
    p = p if p.is_absolute() else root / p
    if not p.exists():
        raise BadRow("missing_media", f"{p} does not exist")
    return str(p)


def check_image(image: str | bytes, checked: Optional[dict] = None) -> None:
    """Decode ``image`` (a file path or bytes) whole, so that a corrupt file or a directory is a bad row here
    and never an exception halfway through an evaluation. ``checked`` remembers the paths seen (shared media)."""
    from PIL import Image

    key = image if isinstance(image, str) else None
    if checked is not None and key in checked:
        error = checked[key]
    else:
        error = None
        if isinstance(image, str) and Path(image).is_dir():
            error = f"{image} is a directory, not an image"
        else:
            try:
                with Image.open(image if isinstance(image, str) else io.BytesIO(image)) as im:
                    im.load()
            except Exception as e:  # PIL raises many kinds (UnidentifiedImageError, OSError, SyntaxError, ...)
                error = f"{image if isinstance(image, str) else 'image bytes'}: cannot decode: {e}"
        if checked is not None and key is not None:
            checked[key] = error
    if error:
        raise BadRow("bad_image", error)


def sample_frames(directory: str | Path, max_frames: int) -> list[str]:
    """``max_frames`` frame files evenly spaced over the sorted names of ``directory`` (all if fewer)."""
    if not Path(directory).is_dir():
        raise BadRow("bad_video", f"{directory} is not a directory of frames")
    files = sorted(p for p in Path(directory).iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if not files:
        raise BadRow("missing_media", f"{directory} holds no frames ({', '.join(FRAME_SUFFIXES)})")
    if len(files) <= max_frames:
        return [str(p) for p in files]
    step = (len(files) - 1) / (max_frames - 1) if max_frames > 1 else 0
    return [str(files[round(i * step)]) for i in range(max_frames)]


def vl_category(item_id: str) -> str:
    """VL-RewardBench's category from the id prefix (case-insensitive, as the official split)."""
    s = item_id.lower()
    if s.startswith(("rlaif", "rlhf", "hallucination")):
        return "hallucination"
    if s.startswith(("mathverse", "mmmu")):
        return "reasoning"
    return "general"


def mmrb_category(item_id: str, category: str) -> str:
    """Multimodal RewardBench's reported category (reasoning and safety split by the ID prefix)."""
    c = category.strip().lower()
    if c in ("open_generation/correctness_task", "correctness"):
        return "correctness"
    if c in ("open_generation/preference_task", "preference"):
        return "preference"
    if c in ("knowledge", "vqa"):
        return c
    if c == "reasoning":
        return "math" if item_id.lower().startswith("math") else "coding"
    if c == "safety":
        return "bias" if item_id.lower().startswith("pairs") else "toxicity"
    raise BadRow("unknown_category", f"Category {category!r}")


def mmrlhf_category(media_path: str) -> str:
    """MM-RLHF-RewardBench's category: the first of mcq/long/short/safety/video found in the media path."""
    s = media_path.lower()
    hits = [(s.find(c), c) for c in MMRLHF_CATEGORIES if c in s]
    if not hits:
        raise BadRow("unknown_category", f"no category in media path {media_path!r}")
    return min(hits)[1]


class _Media:
    """Media paths of one file's rows: resolved under ``root`` and, with ``load``, checked (decoded once each)."""

    def __init__(self, root: Path, load: bool, max_frames: int = 32):
        self.root, self.load, self.max_frames, self.checked = root, load, max_frames, {}

    def image(self, value: Any, name: str) -> str | bytes:
        if isinstance(value, bytes):
            if self.load:
                check_image(value)
            return value
        path = _path(value, name)
        if not self.load:
            return path
        path = _media(path, self.root)
        check_image(path, self.checked)
        return path

    def video(self, value: Any, name: str) -> Optional[list[str]]:
        path = _path(value, name)
        if not self.load:
            return None
        frames = sample_frames(_media(path, self.root), self.max_frames)
        for f in frames:
            check_image(f, self.checked)
        return frames


def _vl_record(rec: dict, media: _Media) -> EvalPair:
    item_id = str(_req(rec, "id"))
    if "response" in rec and "human_ranking" in rec:  # the official HF parquet
        responses, ranking = rec["response"], rec["human_ranking"]
        if not (isinstance(responses, (list, tuple)) and len(responses) == 2
                and all(isinstance(r, str) and r.strip() for r in responses)):  # fmt: skip
            raise BadRow("bad_field", f"response must hold 2 non-empty strings, got {responses!r:.80}")
        if not isinstance(ranking, (list, tuple)) or list(ranking) not in ([0, 1], [1, 0]):
            raise BadRow("bad_label", f"human_ranking must be [0, 1] or [1, 0], got {ranking!r}")
        chosen, rejected = (responses[0], responses[1]) if list(ranking) == [0, 1] else (responses[1], responses[0])
        question = _text(rec, "query")
        img = rec.get("image")
        images = []
        if isinstance(img, dict) and img.get("bytes"):
            images = [media.image(img["bytes"], "image.bytes")]
        elif isinstance(img, dict) and img.get("path"):
            images = [media.image(img["path"], "image.path")]
        elif img is not None and not isinstance(img, dict):
            raise BadRow("bad_field", f"image must be {{bytes, path}}, got {type(img).__name__}")
    else:  # the authors' jsonl
        question, chosen, rejected = _text(rec, "prompt", "query"), _text(rec, "chosen"), _text(rec, "rejected")
        images = [media.image(rec["image"], "image")] if rec.get("image") else []
    return EvalPair("vl_rewardbench", item_id, item_key(item_id, question, chosen, rejected), vl_category(item_id),
                    item_id, question, chosen, rejected, images)  # fmt: skip


def _mmrb_record(rec: dict, media: _Media) -> EvalPair:
    item_id = str(_req(rec, "ID", "id"))
    question, out1, out2 = _text(rec, "Text"), _text(rec, "Output1"), _text(rec, "Output2")
    better = str(_req(rec, "Better")).strip()
    if better not in ("Output1", "Output2"):
        raise BadRow("bad_label", f"Better must be Output1 or Output2, got {better!r}")
    chosen, rejected = (out1, out2) if better == "Output1" else (out2, out1)
    category = mmrb_category(item_id, str(_req(rec, "Category")))
    images = [media.image(rec["Image"], "Image")] if rec.get("Image") else []
    return EvalPair("multimodal_rewardbench", item_id, item_key(item_id, question, chosen, rejected), category,
                    item_id, question, chosen, rejected, images)  # fmt: skip


def _mmrlhf_record(rec: dict, media: _Media) -> EvalPair:
    item_id = str(_req(rec, "id"))
    question, chosen, rejected = _text(rec, "prompt"), _text(rec, "chosen"), _text(rec, "rejected")
    images, video = [], None
    if rec.get("video"):
        path = _path(rec["video"], "video")
        video = media.video(path, "video")
    elif rec.get("image"):
        path = _path(rec["image"], "image")
        images = [media.image(path, "image")]
    else:
        raise BadRow("missing_field", "needs 'image' or 'video'")
    return EvalPair("mm_rlhf_rewardbench", item_id, item_key(item_id, question, chosen, rejected),
                    mmrlhf_category(path), item_id, question, chosen, rejected, images, video)  # fmt: skip


def _raw_rows(path: Path):
    """The raw rows of a local benchmark file; a missing, unsupported or unreadable file is a :class:`BadInput`."""
    if not path.exists():
        raise BadInput(f"{path}: no such file")
    if path.is_dir():
        raise BadInput(f"{path}: is a directory, not a benchmark file")
    try:  # the readers name the file: unsupported suffix, broken gzip or parquet
        yield from iter_raw_rows(str(path))
    except InvalidInput as e:
        raise BadInput(str(e)) from None


def detect_benchmark(path: str | Path) -> str:
    """The benchmark of a file, from its first record's fields (a file in no benchmark's format is a BadInput)."""
    for raw in _raw_rows(Path(path)):
        rec = raw.data
        if not isinstance(rec, dict):
            break
        if "Output1" in rec or "Better" in rec:
            return "multimodal_rewardbench"
        if "human_ranking" in rec:
            return "vl_rewardbench"
        if {"chosen", "rejected"} <= set(rec) and ("prompt" in rec or "query" in rec):
            if "video" in rec or any(c + "/" in str(rec.get("image", "")) for c in MMRLHF_CATEGORIES):
                return "mm_rlhf_rewardbench"
            return "vl_rewardbench"
        hint = " (a preference-pairs file: training data, see preprocess.pairs)" if "response_1" in rec else ""
        raise BadInput(f"{path}: row {raw.row}: in no benchmark's format{hint}: fields {sorted(rec)[:10]}; "
                       "VL-RewardBench wants id, prompt, chosen, rejected (or query, response, human_ranking), "
                       "Multimodal RewardBench ID, Text, Output1, Output2, Better, MM-RLHF-RewardBench id, prompt, "
                       "chosen, rejected, image|video")  # fmt: skip
    else:
        raise BadInput(f"{path}: no rows")
    raise BadInput(f"{path}: row {raw.row}: cannot tell the benchmark (not a JSON object); name it (BENCH=FILE)")


def load_benchmark(benchmark: str, path: str | Path, media_root: str | Path | None = None, *,
                   skip_invalid: bool = False, load_media: bool = True, max_frames: int = 32) -> Loaded:  # fmt: skip
    """All pairs of one benchmark file. ``media_root``: where relative image/video paths start (default:
    the file's directory). ``load_media=False`` checks no media (for counting and scoring)."""
    if benchmark not in BENCHMARKS:
        raise BadInput(f"unknown benchmark {benchmark!r}; one of {', '.join(BENCHMARKS)}")
    path = Path(path)
    media = _Media(Path(media_root) if media_root else path.parent, load_media, max_frames)
    parse = {"vl_rewardbench": _vl_record, "multimodal_rewardbench": _mmrb_record,
             "mm_rlhf_rewardbench": _mmrlhf_record}[benchmark]  # fmt: skip
    pairs, rejected, seen, read = [], Counter(), set(), 0
    for raw in _raw_rows(path):
        row, rec = raw.row, raw.data
        read += 1
        try:
            if isinstance(rec, BadRow):
                raise rec
            if not isinstance(rec, dict):
                raise BadRow("bad_json", f"a record must be an object, got {type(rec).__name__}")
            pair = parse(rec, media)
            if pair.key in seen:
                raise BadRow("duplicate", f"id {pair.id} with the same question and responses appears twice")
            seen.add(pair.key)
            pair.source, pair.row = str(path), row
            pairs.append(pair)
        except BadRow as e:
            if not skip_invalid:
                raise BadInput(f"{path}: row {row}: {e.reason}: {e}") from None
            rejected[e.reason] += 1
    if not read:
        raise BadInput(f"{path}: no rows")
    assert read == len(pairs) + sum(rejected.values())
    return Loaded(pairs, read, rejected, sha256_of(path))
