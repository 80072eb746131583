"""Scoring with a trained scalar reward model (an HF export of :mod:`.trainer`): one reward per (question,
images, response), read at the last token exactly as in training (the same chat template, the same images)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

from r1reward_verl.data.outputs import bt_user_turn


def is_scalar_model(path: str | Path) -> bool:
    """Whether ``path`` is an HF directory of the scalar reward model (its ``architectures``)."""
    import json

    from r1reward_verl.bt.model import ARCHITECTURE

    cfg = Path(path) / "config.json"
    try:
        return ARCHITECTURE in (json.loads(cfg.read_text()).get("architectures") or [])
    except (OSError, ValueError):
        return False


def _pil(image: Any):
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, dict):  # the parquet's {"bytes", "path"}
        image = image.get("bytes") or image.get("path")
    return Image.open(io.BytesIO(image) if isinstance(image, (bytes, bytearray)) else image).convert("RGB")


def conversation(question: str, response: str, num_images: int) -> list[dict]:
    """What the trainer reads (``preprocess.pairs --bt-out``, ``MultiTurnSFTDataset``'s image items): the user turn
    with its images before the question, then the response as the assistant's turn."""
    text = bt_user_turn(question, 0)
    return [{"role": "user", "content": [{"type": "image"}] * num_images + [{"type": "text", "text": text}]},
            {"role": "assistant", "content": [{"type": "text", "text": response}]}]  # fmt: skip


class ScalarRewardModel:
    """``score(items)``: items are ``(question, images, response)``; images are PIL images, bytes, paths or the
    parquet's ``{"bytes", "path"}``. Batched with right padding; the reward is at each row's last real token."""

    def __init__(self, path: str | Path, *, device: str = "cpu", dtype: str = "float32", batch_size: int = 16):
        import torch
        from transformers import AutoModelForTokenClassification, AutoProcessor

        import r1reward_verl.bt.model  # noqa: F401  (registers the class)

        self.torch, self.device, self.batch_size = torch, device, batch_size
        self.processor = AutoProcessor.from_pretrained(str(path))
        self.processor.tokenizer.padding_side = "right"
        self.model = AutoModelForTokenClassification.from_pretrained(str(path), dtype=getattr(torch, dtype))
        self.model.to(device).eval()
        self.tokens = 0  # tokens scored (prompt + response), for the evaluator's counts

    def _batch(self, items: Sequence[tuple[str, list, str]]) -> list[float]:
        from r1reward_verl.bt.model import last_token_rewards

        texts, images = [], []
        for question, imgs, response in items:
            texts.append(self.processor.apply_chat_template(conversation(question, response, len(imgs)), tokenize=False))
            images += [_pil(x) for x in imgs]
        enc = self.processor(text=texts, images=images or None, return_tensors="pt", padding=True).to(self.device)
        self.tokens += int(enc["attention_mask"].sum())
        with self.torch.no_grad():
            logits = self.model(**enc).logits
        return last_token_rewards(logits, enc["attention_mask"]).tolist()

    def score(self, items: Sequence[tuple[str, list, str]]) -> list[float]:
        out: list[float] = []
        for start in range(0, len(items), self.batch_size):
            out += self._batch(items[start : start + self.batch_size])
        return out
