"""Reading preference pairs: the generic pair format, R1-Reward-RL rows, local files or a hub name.

Generic pair format (JSONL or parquet, one record per pair; R1-Reward-200K and the source sets of
the paper's Table 2 map onto it):

| field | type | meaning |
|---|---|---|
| id | str or int | unique per input |
| question | str | the question asked about the image(s) |
| images | list | each a file path (relative to the input file, or absolute), a base64 string (optionally a ``data:`` URI), or bytes; may be empty (text-only pair) |
| response_1, response_2 | str | the two candidate responses, non-empty |
| preferred | 1 or 2 | the human-preferred response |
| source | str, optional | the source data set |
| attempts | int or "failed", optional | how many annotator tries gave the right label (R1-Reward §4.3) |
| reasoning | str, optional | the annotator's reasoning, for SFT |
| critique_1, critique_2 | str, optional (both or neither) | a critique of each response (``preprocess.annotate --critiques``), for critic-then-score (``preprocess.pairs --critic-out``) |

R1-Reward-RL (``yifanzhang114/R1-Reward-RL``, columns question, message, answer, image): the two
responses are recovered from the Table 1 prompt inside ``message``; ``answer`` holds the label. Its
rows have no id: each gets ``rl-`` + a digest of its cells (:func:`derived_id`), the same in any shard,
order, re-download or hub stream, so the train/val split of a row never moves.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional


# reading the inputs lives in r1reward_verl.data.sources; re-exported here, where the rest of the project looks
from r1reward_verl.data.images import MIN_PIXELS, limit_pixels, load_image, set_max_pixels  # noqa: F401 (re-exported)
from r1reward_verl.data.sources import (  # noqa: F401
    DATA_SUFFIXES,
    BadRow,
    InvalidInput,
    MissingInput,
    RawRow,
    expand_sources,
    iter_raw_rows,
    probe,
    source_kind,
)

REQUIRED = ("id", "question", "images", "response_1", "response_2", "preferred")
PLACEHOLDERS = ("<image>", "<video>", "<audio>")


@dataclass
class Pair:
    id: str
    question: str
    images: list[dict]  # [{"bytes": b"...", "path": "..."}]
    response_1: str
    response_2: str
    preferred: int
    source: str = ""
    attempts: Optional[str] = None  # "1", "2", "3" or "failed"
    reasoning: Optional[str] = None
    critiques: Optional[tuple[str, str]] = None  # of response_1, response_2 (critique_1, critique_2)
    sanitized: bool = False  # literal <image>/<video>/<audio> in the text were defused
    resized_images: int = 0  # images downscaled to max_pixels
    extra: dict = field(default_factory=dict)
    # set by preprocess.pairs with --processor (r1reward_verl.data.tokens): the RL prompt's tokens as written
    # (responses in this order, and swapped), the SFT row's
    prompt_tokens: Optional[tuple[int, int]] = None
    sft_tokens: Optional[int] = None


def detect_format(rec: dict) -> str:
    if isinstance(rec, dict) and {"message", "answer", "image"} <= set(rec) and "response_1" not in rec:
        return "r1reward_rl"
    return "pairs"


RL_COLUMNS = ("question", "message", "answer", "image")  # R1-Reward-RL's (question and image may be missing)
NEEDED_COLUMNS = {"pairs": REQUIRED, "r1reward_rl": ("message", "answer")}


def check_inputs(inputs: list[str], fmt: str = "auto") -> list[str]:
    """``expand_sources``, then every source opened (``probe``) before any output is made: a parquet
    file whose columns fit no format (``fmt``, or either with ``auto``) is an InvalidInput naming it, not
    a run of bad rows (``--skip-invalid`` does not apply to a wrong file)."""
    sources = expand_sources(inputs)
    for source in sources:
        columns = probe(source)
        if columns is None:
            continue
        want = detect_format(dict.fromkeys(columns)) if fmt == "auto" else fmt
        lacks = [c for c in NEEDED_COLUMNS[want] if c not in columns]
        if not lacks:
            continue
        shown = ", ".join(columns[:12]) + (", ..." if len(columns) > 12 else "")
        if fmt == "auto":
            raise InvalidInput(f"{source}: columns {shown} fit neither the pair format ({', '.join(REQUIRED)}) nor "
                               f"R1-Reward-RL's ({', '.join(RL_COLUMNS)})")  # fmt: skip
        raise InvalidInput(f"{source}: columns {shown}: lacks {', '.join(lacks)} of the {fmt} format")
    return sources


def derived_id(rec: dict) -> str:
    """An id for a row without one (R1-Reward-RL's): a digest of its cells as stored (question, message,
    answer, image), so a row has the same id, and so the same train/val split, in any shard, file order
    or sharding, re-downloaded or streamed from the hub. Only an exact copy of a row shares its id."""
    h = hashlib.blake2b(digest_size=12)
    for key in RL_COLUMNS:
        _feed(h, rec.get(key))
    return "rl-" + h.hexdigest()


def _feed(h, v: Any) -> None:
    """``v`` into the digest ``h``, unambiguously (typed, length-prefixed, dict keys sorted)."""
    if isinstance(v, dict):
        h.update(b"d%d:" % len(v))
        for k in sorted(v, key=str):
            _feed(h, str(k))
            _feed(h, v[k])
        return
    if isinstance(v, (list, tuple)):
        h.update(b"l%d:" % len(v))
        for x in v:
            _feed(h, x)
        return
    if isinstance(v, (bytes, bytearray, memoryview)):
        tag, data = b"b", bytes(v)
    elif isinstance(v, str):
        tag, data = b"s", v.encode("utf-8", "surrogatepass")
    else:  # None, numbers, booleans
        tag, data = b"r", repr(v).encode()
    h.update(tag + b"%d:" % len(data))
    h.update(data)


def _text(rec: dict, key: str) -> str:
    if key not in rec or rec[key] is None:
        raise BadRow("missing_field", f"missing field {key!r}")
    v = rec[key]
    if not isinstance(v, str):
        raise BadRow("missing_field", f"field {key!r} must be a string, got {type(v).__name__}")
    return v


def _defuse(text: str) -> tuple[str, bool]:
    """verl's datasets split prompts on <image>/<video>/<audio>; such literals in user text are defused."""
    changed = False
    if "<" not in text:
        return text, changed
    for p in PLACEHOLDERS:
        if p in text:
            text = text.replace(p, p.replace("<", "< "))
            changed = True
    return text, changed




def _label(v: Any) -> int:
    s = str(v).strip()
    if s.startswith("<answer>") and s.endswith("</answer>"):
        s = s[len("<answer>") : -len("</answer>")].strip()
    if s not in ("1", "2") or isinstance(v, bool):
        raise BadRow("bad_label", f"label must be 1 or 2, got {v!r}")
    return int(s)


def _attempts(v: Any) -> Optional[str]:
    if v is None:
        return None
    s = str(v).strip().lower()
    if s == "failed" or (s.isdigit() and int(s) >= 1):
        return s
    raise BadRow("bad_attempts", f"attempts must be a positive integer or 'failed', got {v!r}")


def normalize_pair(rec: Any, base_dir: Path) -> Pair:
    """A generic-format record -> Pair (images loaded and checked), or BadRow."""
    if isinstance(rec, BadRow):
        raise rec
    if not isinstance(rec, dict):
        raise BadRow("bad_json", f"record must be an object, got {type(rec).__name__}")
    for key in REQUIRED:
        if key not in rec or rec[key] is None:
            raise BadRow("missing_field", f"missing field {key!r}")
    rid = rec["id"]
    if not isinstance(rid, (str, int)) or isinstance(rid, bool) or str(rid).strip() == "":
        raise BadRow("missing_field", f"id must be a non-empty string or integer, got {rid!r}")
    question, q_changed = _defuse(_text(rec, "question"))
    r1, c1 = _defuse(_text(rec, "response_1"))
    r2, c2 = _defuse(_text(rec, "response_2"))
    for name, r in (("response_1", r1), ("response_2", r2)):
        if not r.strip():
            raise BadRow("empty_response", f"{name} is empty")
    if r1.split() == r2.split():  # nothing to prefer: the label would be noise
        raise BadRow("identical_responses", "response_1 and response_2 are the same text (whitespace aside)")
    images = rec["images"]
    if not isinstance(images, (list, tuple)):
        raise BadRow("missing_field", f"images must be a list, got {type(images).__name__}")
    loaded = [load_image(x, base_dir) for x in images]
    pair = Pair(
        id=str(rid),
        question=question,
        images=loaded,
        response_1=r1,
        response_2=r2,
        preferred=_label(rec["preferred"]),
        source=str(rec.get("source") or ""),
        attempts=_attempts(rec.get("attempts")),
        reasoning=rec.get("reasoning") or None,
        sanitized=q_changed or c1 or c2,
        resized_images=sum(bool(im.pop("resized", False)) for im in loaded),
    )
    if pair.reasoning is not None and not isinstance(pair.reasoning, str):
        raise BadRow("missing_field", "reasoning must be a string")
    critiques = _critiques(rec)
    if critiques is not None:  # the critic's turns are verl SFT rows too: no stray image placeholders
        (c1, d1), (c2, d2) = _defuse(critiques[0]), _defuse(critiques[1])
        pair.critiques, pair.sanitized = (c1, c2), pair.sanitized or d1 or d2
    return pair


def _critiques(rec: dict) -> Optional[tuple[str, str]]:
    """``critique_1``/``critique_2``: both non-empty strings, or neither field."""
    got = [rec.get(f"critique_{k}") for k in (1, 2)]
    if all(c is None for c in got):
        return None
    for k, c in zip((1, 2), got):
        if not isinstance(c, str) or not c.strip():
            raise BadRow("bad_critique", f"critique_{k} must be a non-empty string when the other is given, got {c!r}")
    return got[0], got[1]


_R1_START = "[Response 1]:"
_R2_START = "[Response 2]:"
# where response 2 ends: the "Output Format" section, as a line that may start with markdown
# heading marks and bold ("# Output Format", "###### **Output Format (strictly follow):**")
_END_RE = re.compile(r"\n[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*)?[ \t]*Output Format")
# a dangling heading prefix left at the end of a section ("...  \n\n###### " before "[Response 2]:")
_TRAILING_HEADING_RE = re.compile(r"(?:^|\n)[ \t]*#{1,6}[ \t]*(?:\*\*)?[ \t]*$")


def _section(text: str) -> str:
    """A section of the Table 1 prompt without surrounding blanks and a dangling heading prefix."""
    return _TRAILING_HEADING_RE.sub("", text.rstrip()).strip()


def _message_text(message: Any) -> str:
    """The user text of R1-Reward-RL's ``message`` (a JSON chat list, or plain text)."""
    if isinstance(message, str):
        s = message.strip()
        if s[:1] in "[{":
            try:
                message = json.loads(s)
            except json.JSONDecodeError:
                return message
        else:
            return message
    if isinstance(message, dict):
        message = [message]
    parts = []
    for m in message if isinstance(message, list) else []:
        c = m.get("content") if isinstance(m, dict) else None
        if isinstance(c, str):
            parts.append(c)
        elif isinstance(c, list):
            parts.extend(x.get("text", "") for x in c if isinstance(x, dict) and x.get("type") == "text")
    return "\n".join(parts)


def normalize_r1reward_rl(rec: dict, base_dir: Path) -> Pair:
    """An R1-Reward-RL row -> Pair: responses from the Table 1 prompt in ``message``, label from ``answer``;
    its ``id`` if it has one, else :func:`derived_id` (``extra["derived_id"]``)."""
    text = _message_text(rec.get("message"))
    i1, i2 = text.find(_R1_START), text.find(_R2_START)
    if i1 < 0 or i2 < i1:
        raise BadRow("unparsable_prompt", "message has no '[Response 1]:' ... '[Response 2]:' (Table 1 prompt)")
    m = _END_RE.search(text, i2)
    end = m.start() if m else len(text)
    answer = rec.get("answer")
    if isinstance(answer, (list, tuple)):
        if len(answer) == 0:
            raise BadRow("bad_label", "answer list is empty")
        answer = answer[0]
    iq = text.rfind("[Question]:", 0, i1)
    # the question as the Table 1 prompt showed it; the ``question`` column as a fallback
    question = _section(text[iq + len("[Question]:") : i1]) if iq >= 0 else rec.get("question")
    generic = {
        "id": rec["id"] if rec.get("id") is not None else derived_id(rec),
        "question": question if isinstance(question, str) else "",
        "images": [rec["image"]] if rec.get("image") else [],
        "response_1": _section(text[i1 + len(_R1_START) : i2]),
        "response_2": _section(text[i2 + len(_R2_START) : end]),
        "preferred": answer,
        "source": "R1-Reward-RL",
    }
    pair = normalize_pair(generic, base_dir)
    pair.extra["derived_id"] = rec.get("id") is None
    return pair


def base_dir_of(source: str) -> str:
    p = Path(source)
    return str(p.parent.resolve() if p.exists() else Path(os.getcwd()))
