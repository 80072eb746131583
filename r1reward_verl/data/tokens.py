"""Token counts of the rows ``preprocess.pairs`` writes, counted the way verl 0.9.1 counts them at load time.

* RL rows: what ``RLHFDataset.maybe_filter_out_long_prompts`` compares with ``data.max_prompt_length``:
  verl's own ``_build_messages`` (one image item per ``<image>``), the processor's chat template with the
  generation prompt, ``qwen_vl_utils.process_vision_info`` (verl's ``_process_multi_modal_info``) and the
  processor on text and images (``build_multimodal_processor_inputs``), so the image tokens are the ones the
  processor expands for the image sizes (already bounded by ``--max-pixels``, then by the processor's own
  ``max_pixels``). A text-only row is the tokenizer's count, as verl does.
* SFT rows: the sequence ``MultiTurnSFTDataset.__getitem__`` builds and compares with ``data.max_length``
  (``truncation: error`` raises on a longer one): each message through its ``_process_single_message`` (the
  system prompt counted once), images through its ``_build_messages`` (``process_image``).

Both use verl's dataset methods on a dataset object made without reading a file (:func:`_bare`), with
verl's defaults for what our configs leave unset (no ``apply_chat_template_kwargs``, ``mm_processor_kwargs``
or tools; the processor's own patch size). The processor is loaded by verl's ``hf_processor``, as the
trainer loads it from the checkpoint. ``tests/test_preprocess_tokens.py`` checks the counts row by row
against verl's datasets on the written parquet.

An RL row is counted in both orders of its responses (the balancer decides the order after the count):
the images once, the other order by its text alone (:meth:`TokenCounter.rl_prompt_tokens`). The cost is
the processor's: about 0.1 s per row and output on one core for a 1,280-token image (``--workers``).

:class:`Limits` and :class:`LimitReport`: which rows are over ``--max-prompt-tokens``, ``--max-sft-tokens``
and ``--max-images``, counted (and dropped with ``--drop-overlong`` by ``preprocess.pairs``), the first few
named and the longest lengths kept, for ``summary.json`` and the warnings on stderr.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Optional

from r1reward_verl.data.outputs import rl_row, sft_row
from r1reward_verl.data.sources import InvalidInput


def _bare(cls, **attrs):
    """An instance of verl's dataset class ``cls`` without its ``__init__`` (which reads parquet files),
    with the attributes its row methods read."""
    obj = cls.__new__(cls)
    obj.__dict__.update(attrs)
    return obj


class TokenCounter:
    """Counts tokens with the processor at ``path`` (a local checkpoint directory or a hub id)."""

    def __init__(self, path: str):
        self.path = path
        self.processor = None

    def load(self) -> "TokenCounter":
        """Load the processor (once). Raises InvalidInput naming ``--processor`` if it cannot be loaded."""
        if self.processor is not None:
            return self
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from verl.utils import hf_processor, hf_tokenizer

            processor = hf_processor(self.path)
            from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset
            from verl.utils.dataset.rl_dataset import RLHFDataset
            from verl.utils.tokenizer.chat_template import extract_system_prompt_and_generation
        if processor is None:  # verl's hf_processor warns and returns None
            why = next((str(w.message) for w in caught if "Failed to create processor" in str(w.message)),
                       "not a multimodal processor")  # fmt: skip
            why = why.splitlines()[0].replace("Failed to create processor: ", "")
            why = why.replace(". This may affect multimodal processing", "")
            raise InvalidInput(f"--processor {self.path}: cannot be loaded as a multimodal processor ({why})")

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tokenizer = hf_tokenizer(self.path)  # what verl's SFT trainer gives MultiTurnSFTDataset
        self.processor = processor
        patch = processor.image_processor.patch_size
        self.rl = _bare(RLHFDataset, processor=processor, tokenizer=processor.tokenizer, image_key="images",
                        video_key="videos", audio_key="audios", image_patch_size=patch)  # fmt: skip
        system_prompt, generation_prompt = extract_system_prompt_and_generation(tokenizer)
        self.sft = _bare(MultiTurnSFTDataset, processor=processor, tokenizer=tokenizer,
                         messages_key="messages", image_key="images", video_key="videos", image_patch_size=patch,
                         apply_chat_template_kwargs={}, system_prompt=system_prompt,
                         generation_prompt=generation_prompt)  # fmt: skip
        return self

    # RL: RLHFDataset.maybe_filter_out_long_prompts's doc2len (processor branch), step by step
    def _raw_prompt(self, row: dict) -> tuple[str, list]:
        messages = self.rl._build_messages(copy.deepcopy({k: row[k] for k in ("prompt", "images")}), key="prompt")
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False), messages

    def _text_tokens(self, raw_prompt: str) -> int:
        tokenizer = self.processor.tokenizer
        return len(tokenizer(text=raw_prompt, add_special_tokens=False, return_attention_mask=False)["input_ids"])

    def rl_prompt_tokens(self, row: dict, *variants: dict) -> list[int]:
        """The prompt length of the RL ``row`` as verl filters it, and of each of ``variants``: the same row
        with other text (the responses swapped) and the same images. A variant differs from ``row`` only
        in text between special tokens (the image tokens are special tokens, as many in each), so its length
        is ``row``'s plus the difference of the two templated texts' token counts (no image processed again)."""
        from verl.utils.dataset.rl_dataset import RLHFDataset
        from verl.utils.tokenizer import build_multimodal_processor_inputs

        raw, messages = self._raw_prompt(row)
        images, videos, audios = RLHFDataset._process_multi_modal_info(messages, self.rl.image_patch_size, None)
        if images is None and videos is None and audios is None:
            base = self._text_tokens(raw)
        else:
            inputs = build_multimodal_processor_inputs(self.processor, text=[raw], images=images, videos=videos,
                                                       audio=audios, mm_processor_kwargs={})  # fmt: skip
            base = len(inputs["input_ids"][0])
        if not variants:
            return [base]
        text = self._text_tokens(raw)
        return [base, *(base + self._text_tokens(self._raw_prompt(v)[0]) - text for v in variants)]

    # SFT: the sequence MultiTurnSFTDataset.__getitem__ concatenates before it checks max_length
    def sft_tokens(self, row: dict) -> int:
        messages = self.sft._build_messages(copy.deepcopy({k: row[k] for k in ("messages", "images")}))
        return sum(len(self.sft._process_single_message(i, m, messages)[0]) for i, m in enumerate(messages))


_COUNTER: list[Optional[TokenCounter]] = [None]


_COUNTING = {"sft": False, "difficulty_filter": False}  # count SFT rows; skip rows --difficulty-filter drops


def configure(path: Optional[str], sft: bool = False, difficulty_filter: bool = False) -> None:
    """This process's counter (None: none), kept if it counts with the same processor; the processor is
    loaded at the first use (:func:`counter`)."""
    if path is None:
        _COUNTER[0] = None
    elif _COUNTER[0] is None or _COUNTER[0].path != path:
        _COUNTER[0] = TokenCounter(path)
    _COUNTING.update(sft=sft, difficulty_filter=difficulty_filter)


def counter() -> Optional[TokenCounter]:
    """This process's counter, loaded (InvalidInput naming --processor if it cannot be), or None."""
    return _COUNTER[0].load() if _COUNTER[0] is not None else None


def count_pair(pair) -> None:
    """With a counter: set ``pair.prompt_tokens`` (the RL prompt with the responses in this order, and swapped)
    and ``pair.sft_tokens`` (its SFT row, if SFT rows are written and it has a reasoning); the RL prompt is not
    counted for a row ``--difficulty-filter`` keeps out of the RL output."""
    c = counter()
    if c is None:
        return
    easy = pair.attempts is None or (pair.attempts != "failed" and int(pair.attempts) < 2)
    if not (_COUNTING["difficulty_filter"] and easy):  # an easy row is an SFT row only
        swapped = dataclasses.replace(pair, response_1=pair.response_2, response_2=pair.response_1)
        pair.prompt_tokens = tuple(c.rl_prompt_tokens(rl_row(pair, 0, "", False, ""), rl_row(swapped, 0, "", True, "")))
    if _COUNTING["sft"] and pair.reasoning is not None:
        pair.sft_tokens = c.sft_tokens(sft_row(pair))


# what a row over each limit does in training, and what --drop-overlong does with it
LIMITS = {
    "overlong_prompt": ("--max-prompt-tokens", "RL prompts", "tokens",
                        "verl's RLHFDataset drops them when it loads the data (filter_overlong_prompts)"),
    "overlong_sft": ("--max-sft-tokens", "SFT rows", "tokens",
                     "verl's MultiTurnSFTDataset (truncation: error) stops the SFT run at the first of them"),
    "too_many_images": ("--max-images", "RL rows", "images",
                        "vLLM refuses a prompt with more images than rollout.limit_images"),
}  # fmt: skip
SHOWN = 5  # rows named per limit, longest lengths kept per kind


@dataclass
class Limits:
    """The limits a row is checked against (None: not checked), and whether rows over them are dropped."""

    processor: Optional[str] = None
    max_prompt_tokens: Optional[int] = None
    max_sft_tokens: Optional[int] = None
    max_images: Optional[int] = 4
    drop: bool = False

    def __post_init__(self):
        for reason, value in (("overlong_prompt", self.max_prompt_tokens), ("overlong_sft", self.max_sft_tokens),
                              ("too_many_images", self.max_images)):  # fmt: skip
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InvalidInput(f"{LIMITS[reason][0]} wants an integer >= 1, got {value!r}")
        for flag, value in (("--max-prompt-tokens", self.max_prompt_tokens), ("--max-sft-tokens", self.max_sft_tokens)):
            if value is not None and not self.processor:
                raise InvalidInput(f"{flag} needs --processor (the policy's HF processor, e.g. "
                                   "Qwen/Qwen2.5-VL-7B-Instruct, to count tokens as verl does)")  # fmt: skip

    def limit(self, reason: str) -> Optional[int]:
        return {"overlong_prompt": self.max_prompt_tokens, "overlong_sft": self.max_sft_tokens,
                "too_many_images": self.max_images}[reason]  # fmt: skip


class LimitReport:
    """Rows over each limit (counted whether kept or dropped, the first few named) and the longest lengths seen."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.over: Counter = Counter()
        self.first: dict[str, list[str]] = {}
        self.longest: dict[str, list[tuple[int, str]]] = {"prompt_tokens": [], "sft_tokens": [], "images": []}

    def _see(self, kind: str, n: int, where: str) -> None:
        top = self.longest[kind]
        if len(top) < SHOWN or n > top[-1][0]:
            top.append((n, where))
            top.sort(key=lambda x: -x[0])
            del top[SHOWN:]

    def _check(self, reason: str, kind: str, n: Optional[int], where: str) -> Optional[tuple[str, str]]:
        """``(reason, "N tokens > --flag LIMIT")`` if ``n`` is over the limit of ``reason``, else None."""
        if n is None:
            return None
        self._see(kind, n, where)
        limit = self.limits.limit(reason)
        if limit is None or n <= limit:
            return None
        self.over[reason] += 1
        shown = self.first.setdefault(reason, [])
        if len(shown) < SHOWN:
            shown.append(f"{where}: {n} {LIMITS[reason][2]}")
        return reason, f"{n} {LIMITS[reason][2]} > {LIMITS[reason][0]} {limit}"

    def rl(self, pair, swapped: bool, where: str) -> Optional[tuple[str, str]]:
        """``(reason, message)`` of the first limit the RL row of ``pair`` (responses ``swapped`` or not) is over,
        or None. Each limit is checked and counted, so a row over both counts in both."""
        n = None if pair.prompt_tokens is None else pair.prompt_tokens[swapped]
        over = [self._check("too_many_images", "images", len(pair.images), where),
                self._check("overlong_prompt", "prompt_tokens", n, where)]  # fmt: skip
        return next((x for x in over if x), None)

    def sft(self, pair, where: str) -> Optional[tuple[str, str]]:
        """``("overlong_sft", message)`` if the SFT row of ``pair`` is over ``--max-sft-tokens``, else None."""
        return self._check("overlong_sft", "sft_tokens", pair.sft_tokens, where)

    def as_dict(self) -> dict:
        lim = self.limits
        return {
            "limits": {"processor": lim.processor, "max_prompt_tokens": lim.max_prompt_tokens,
                       "max_sft_tokens": lim.max_sft_tokens, "max_images": lim.max_images, "drop_overlong": lim.drop},
            "over_limit": dict(self.over),
            "first_over_limit_rows": self.first,
            "longest": {k: [{"length": n, "row": w} for n, w in v] for k, v in self.longest.items() if v},
        }  # fmt: skip


_KIND = {"overlong_prompt": "prompt_tokens", "overlong_sft": "sft_tokens", "too_many_images": "images"}


def warning_lines(summary: dict) -> list[str]:
    """One line per limit that rows are over (from a summary of ``preprocess.pairs``): how many, the longest,
    the first rows, and what happens to them."""
    lines, lim = [], summary["limits"]
    for reason, n in summary["over_limit"].items():
        flag, what, unit, consequence = LIMITS[reason]
        limit = lim[flag[2:].replace("-", "_")]
        over = {x["length"] for x in summary["longest"][_KIND[reason]] if x["length"] > limit}
        longest = ", ".join(map(str, sorted(over, reverse=True)))
        counted = "sft_rejected_by_reason" if reason == "overlong_sft" else "rejected_by_reason"
        fate = (f"dropped, counted in {counted} ({reason})" if lim["drop_overlong"] else
                f"kept: {consequence}; --drop-overlong drops and counts them")  # fmt: skip
        first = "; ".join(summary["first_over_limit_rows"][reason][:3])
        lines.append(f"warning: {n} {what} over {flag} {limit} (longest {longest} {unit}; first {first}): {fate}")
    return lines


def summary_text(summary: dict) -> str:
    """The part of the summary line about limits: rows over each, and the longest lengths counted."""
    parts = []
    if summary["over_limit"]:
        fate = "dropped" if summary["limits"]["drop_overlong"] else "kept"
        parts.append(f"over limits {summary['over_limit']} ({fate})")
    longest = {k: v[0]["length"] for k, v in summary["longest"].items() if k != "images"}
    if longest:
        parts.append("longest " + ", ".join(f"{k.replace('_tokens', '')} {n}" for k, n in longest.items()) + " tokens")
    return "".join(f"; {p}" for p in parts)
