"""Images of a pair, loaded once: a path (relative to the input file, or absolute), a ``data:`` URI, base64 or
bytes -> bytes PIL can decode (checked), downscaled above ``set_max_pixels``; verified files cached by path and
content digest (:data:`FILE_IMAGES`: one cache per process, checked against the file system once per run)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
from pathlib import Path
from typing import Any, Optional

from PIL import Image, UnidentifiedImageError

from r1reward_verl.data.sources import BadRow

_B64_RE = re.compile(r"^[A-Za-z0-9+/=\s]+$")


def load_image(spec: Any, base_dir: Path) -> dict:
    """One image spec -> ``{"bytes", "path"}`` with bytes PIL can decode, or BadRow."""
    path = ""
    if isinstance(spec, dict):  # {"bytes": ..., "path": ...} as HF datasets store images
        data, path = spec.get("bytes"), spec.get("path") or ""
        if data is None and path:
            spec = path
        elif data is None:
            raise BadRow("missing_image", "image dict without bytes or path")
    if isinstance(spec, (bytes, bytearray, memoryview)):
        data = bytes(spec)
    elif isinstance(spec, str):
        s = spec.strip()
        if s.startswith("data:"):
            try:
                data = base64.b64decode(s.split(",", 1)[1], validate=False)
            except (IndexError, binascii.Error) as e:
                raise BadRow("undecodable_image", f"bad data URI: {e}") from None
        else:
            full = s if s[:1] == "/" else f"{base_dir}/{s}"
            cached = FILE_IMAGES.get(full) if len(s) < 4096 else None
            if cached is not None:
                return {"bytes": cached[2], "path": full, **({"resized": True} if cached[4] else {})}
            if len(s) < 4096 and os.path.isfile(full):
                with open(full, "rb") as f:
                    data, path = f.read(), full
            elif len(s) >= 16 and len(s) % 4 == 0 and _B64_RE.match(s[:4096]):
                try:
                    data = base64.b64decode(s, validate=False)
                except binascii.Error as e:
                    raise BadRow("undecodable_image", f"bad base64 image: {e}") from None
            else:
                shown = s if len(s) < 200 else s[:200] + "..."
                raise BadRow("missing_image", f"image file not found: {os.path.join(base_dir, shown)}")
    elif not isinstance(spec, dict):
        raise BadRow("undecodable_image", f"unsupported image value of type {type(spec).__name__}")
    try:
        with Image.open(io.BytesIO(data)) as im:
            size, fmt = im.size, im.format
            im.verify()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise BadRow("undecodable_image", f"image {path or '(inline)'} cannot be decoded: {e}") from None
    out = {"bytes": data, "path": path}
    if _MAX_PIXELS[0] and size[0] * size[1] > _MAX_PIXELS[0]:
        out["bytes"], out["resized"] = limit_pixels(data, size, fmt, _MAX_PIXELS[0]), True
    if path:
        FILE_IMAGES.put(path, out["bytes"], out.get("resized", False))
    return out


_MAX_PIXELS: list[Optional[int]] = [None]


MIN_PIXELS = 28 * 28  # one Qwen2.5-VL image token (a 28x28 patch): the smallest image it can read


def set_max_pixels(max_pixels: Optional[int]) -> None:
    """Images above ``max_pixels`` (width x height) are downscaled by ``load_image``; None keeps them.
    Changing it empties the verified-image cache (it holds the converted bytes)."""
    if max_pixels is not None and max_pixels < MIN_PIXELS:
        raise ValueError(f"max_pixels must be at least {MIN_PIXELS} (one 28x28 patch), got {max_pixels}")
    if _MAX_PIXELS[0] != max_pixels:
        _MAX_PIXELS[0] = max_pixels
        FILE_IMAGES.clear()


def limit_pixels(data: bytes, size: tuple[int, int], fmt: Optional[str], max_pixels: int) -> bytes:
    """Downscale to at most ``max_pixels`` keeping the aspect ratio; PNG stays PNG, others become JPEG q95."""
    w, h = size
    scale = (max_pixels / (w * h)) ** 0.5
    new = (max(1, int(w * scale)), max(1, int(h * scale)))
    with Image.open(io.BytesIO(data)) as im:
        small = im.convert("RGBA" if im.mode in ("RGBA", "LA", "P") and fmt == "PNG" else "RGB").resize(new, Image.LANCZOS)
    buf = io.BytesIO()
    if fmt == "PNG":
        small.save(buf, format="PNG")
    else:
        small.convert("RGB").save(buf, format="JPEG", quality=95)
    return buf.getvalue()


class _ImageCache:
    """Verified image files by path, so a file shared by many pairs is read and checked once.

    Keyed on the path and checked against the file's size and mtime at its first hit in each
    conversion run (``new_run``); bounded in bytes (least recently used out first), so memory stays
    flat however long the input is. Also keeps each file's content digest for de-duplication.
    """

    def __init__(self, max_bytes: int = 256 * 2**20):
        from collections import OrderedDict

        self.max_bytes, self.size = max_bytes, 0
        # path -> [mtime_ns, size, bytes, digest or None, resized]
        self.items: "OrderedDict[str, list]" = OrderedDict()
        self.fresh: set[str] = set()  # checked against the file system in this run

    def new_run(self) -> None:
        self.fresh.clear()

    def clear(self) -> None:
        self.items.clear()
        self.fresh.clear()
        self.size = 0

    def get(self, path: str) -> Optional[list]:
        """The entry ``[mtime_ns, size, bytes, digest, resized]`` of a still-valid cached file, or None."""
        hit = self.items.get(path)
        if hit is None:
            return None
        if path not in self.fresh:
            try:
                st = os.stat(path)
            except OSError:
                return None
            if (st.st_mtime_ns, st.st_size) != (hit[0], hit[1]):
                return None
            self.fresh.add(path)
        self.items.move_to_end(path)
        return hit

    def digest(self, path: str, data: bytes) -> bytes:
        """blake2b-128 of an image's bytes, computed once per cached file."""
        hit = self.items.get(path) if path else None
        if hit is not None and hit[2] is data:
            if hit[3] is None:
                hit[3] = hashlib.blake2b(data, digest_size=16).digest()
            return hit[3]
        return hashlib.blake2b(data, digest_size=16).digest()

    def put(self, path: str, data: bytes, resized: bool = False) -> None:
        try:
            st = os.stat(path)
        except OSError:
            return
        if len(data) > self.max_bytes // 4:
            return
        old = self.items.pop(path, None)
        if old is not None:
            self.size -= len(old[2])
        self.items[path] = [st.st_mtime_ns, st.st_size, data, None, resized]
        self.fresh.add(path)
        self.size += len(data)
        while self.size > self.max_bytes:
            _, entry = self.items.popitem(last=False)
            self.size -= len(entry[2])


FILE_IMAGES = _ImageCache()


def image_digest(path: str, data: bytes) -> bytes:
    """blake2b-128 of an image's bytes (once per cached file)."""
    return FILE_IMAGES.digest(path, data)


def new_run() -> None:
    """A new conversion run: each cached file is checked against the file system again at its first use."""
    FILE_IMAGES.new_run()
