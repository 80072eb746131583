"""The parquet that ``preprocess.pairs`` writes: its schemas and rows, the row-group writer that publishes
a file whole or not at all, and the checks of the output directories made before anything is written."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Optional

import pyarrow as pa
import pyarrow.parquet as pq

from r1reward_verl.data.records import Pair
from r1reward_verl.data.sources import InvalidInput
from r1reward_verl.prompt import build_table1_prompt

IMAGE_TYPE = pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
MESSAGES_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
RL_SCHEMA = pa.schema(
    [
        ("data_source", pa.string()),
        ("prompt", MESSAGES_TYPE),
        ("images", IMAGE_TYPE),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        (
            "extra_info",
            pa.struct(
                [
                    ("index", pa.int64()),
                    ("id", pa.string()),
                    ("question", pa.string()),
                    ("source", pa.string()),
                    ("swapped", pa.bool_()),
                    ("attempts", pa.string()),
                    ("sanitized", pa.bool_()),
                    ("split", pa.string()),
                ]
            ),
        ),
    ]
)
SFT_SCHEMA = pa.schema([("messages", MESSAGES_TYPE), ("images", IMAGE_TYPE), ("id", pa.string()), ("label", pa.string())])
# --bt-out: a pair as the scalar reward model reads it (r1reward_verl.bt.dataset): the question with its images and
# each response as the assistant's turn
BT_SCHEMA = pa.schema([("chosen_messages", MESSAGES_TYPE), ("rejected_messages", MESSAGES_TYPE), ("images", IMAGE_TYPE),
                       ("id", pa.string())])  # fmt: skip
ABILITY = "reward_modeling"


def rl_row(p: Pair, index: int, split: str, swapped: bool, data_source: str) -> dict:
    prompt = build_table1_prompt(p.question, p.response_1, p.response_2, num_images=len(p.images))
    return {
        "data_source": data_source,
        "prompt": [{"role": "user", "content": prompt}],
        "images": p.images,
        "ability": ABILITY,
        "reward_model": {"style": "rule", "ground_truth": str(p.preferred)},
        "extra_info": {"index": index, "id": p.id, "question": p.question, "source": p.source, "swapped": swapped,
                       "attempts": p.attempts, "sanitized": p.sanitized, "split": split},  # fmt: skip
    }


def sft_row(p: Pair) -> dict:
    prompt = build_table1_prompt(p.question, p.response_1, p.response_2, num_images=len(p.images))
    answer = f"<think>{p.reasoning.strip()}</think><answer>{p.preferred}</answer>"
    return {
        "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
        "images": p.images,
        "id": p.id,
        "label": str(p.preferred),
    }


def bt_user_turn(question: str, num_images: int) -> str:
    """The user turn a scalar reward model reads: one ``<image>`` per image, then the question."""
    return "<image>" * num_images + question


def bt_row(p: Pair) -> dict:
    chosen, rejected = (p.response_1, p.response_2) if p.preferred == 1 else (p.response_2, p.response_1)
    user = {"role": "user", "content": bt_user_turn(p.question, len(p.images))}
    return {
        "chosen_messages": [user, {"role": "assistant", "content": chosen}],
        "rejected_messages": [user, {"role": "assistant", "content": rejected}],
        "images": p.images,
        "id": p.id,
    }


# Critic-then-score (MM-RLHF-Reward, R1-Reward Table 6): a generative critic writes a critique of each response, then a
# scalar head scores the response with its critique. The texts below are the one definition the critic's and the
# scorer's training data (--critic-out, the miniature's demo.critic), the annotator's requests (--critiques) and the
# evaluator (r1reward_verl.eval.critic) use.
CRITIQUE_INSTRUCTION = "Critique the response."


def critique_request(question: str, response: str, num_images: int) -> str:
    """The critic's user turn: ``<image>`` placeholders, the question, the response, the instruction."""
    return "<image>" * num_images + f"{question}\nResponse: {response}\n{CRITIQUE_INSTRUCTION}"


def scored_response(response: str, critique: str) -> str:
    """What the scorer reads as the assistant's turn: the response, then its critique."""
    return f"{response}\nCritique: {critique.strip()}"


def critic_sft_rows(p: Pair) -> list[dict]:
    """--critic-out's critic rows (``SFT_SCHEMA``), one a response: the critique request with the pair's images ->
    the response's critique (``p.critiques``); ids ``ID-r1``/``ID-r2``, label the response's number."""
    return [{"messages": [{"role": "user", "content": critique_request(p.question, response, len(p.images))},
                          {"role": "assistant", "content": critique}],
             "images": p.images, "id": f"{p.id}-r{k}", "label": str(k)}
            for k, (response, critique) in enumerate(zip((p.response_1, p.response_2), p.critiques), start=1)]  # fmt: skip


def critic_bt_row(p: Pair) -> dict:
    """--critic-out's scorer row (``BT_SCHEMA``): :func:`bt_row` with each response followed by its critique."""
    (c1, c2) = p.critiques
    return bt_row(replace(p, response_1=scored_response(p.response_1, c1), response_2=scored_response(p.response_2, c2)))


def rl_table(rows: list[dict]) -> pa.Table:
    """RL rows -> a table in ``RL_SCHEMA``, built column by column (several times faster than ``from_pylist``)."""
    prompt_off, roles, contents = [0], [], []
    img_off, img_bytes, img_paths = [0], [], []
    for r in rows:
        for m in r["prompt"]:
            roles.append(m["role"])
            contents.append(m["content"])
        prompt_off.append(len(roles))
        for im in r["images"]:
            img_bytes.append(im["bytes"])
            img_paths.append(im["path"])
        img_off.append(len(img_bytes))
    prompt = pa.ListArray.from_arrays(
        pa.array(prompt_off, pa.int32()),
        pa.StructArray.from_arrays([pa.array(roles, pa.string()), pa.array(contents, pa.string())], names=["role", "content"]),
    )
    images = pa.ListArray.from_arrays(
        pa.array(img_off, pa.int32()),
        pa.StructArray.from_arrays([pa.array(img_bytes, pa.binary()), pa.array(img_paths, pa.string())], names=["bytes", "path"]),
    )
    reward_model = pa.array([r["reward_model"] for r in rows], RL_SCHEMA.field("reward_model").type)
    extra_info = pa.array([r["extra_info"] for r in rows], RL_SCHEMA.field("extra_info").type)
    return pa.Table.from_arrays(
        [pa.array([r["data_source"] for r in rows], pa.string()), prompt, images,
         pa.array([r["ability"] for r in rows], pa.string()), reward_model, extra_info],
        schema=RL_SCHEMA,
    )  # fmt: skip


class AtomicParquet:
    """A parquet file written in row groups to ``.NAME.tmp``, closed and renamed to NAME by :func:`commit_all`."""

    def __init__(self, path: Path, schema: pa.Schema, rows_per_group: int, to_table=None):
        self.path, self.schema, self.rows_per_group = path, schema, rows_per_group
        self.to_table = to_table or (lambda rows: pa.Table.from_pylist(rows, schema=schema))
        self.tmp = path.with_name(f".{path.name}.tmp")
        try:
            self.writer = pq.ParquetWriter(self.tmp, schema)
        except OSError as e:
            raise InvalidInput(f"{self.tmp}: cannot be written ({e})") from None
        self.buf: list[dict] = []

    def add(self, row: dict) -> None:
        self.buf.append(row)
        if len(self.buf) >= self.rows_per_group:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            self.writer.write_table(self.to_table(self.buf))
            self.buf = []

    def close(self) -> None:
        """Write the rest and close the temporary file (what can fail, e.g. on a full disk)."""
        self.flush()
        self.writer.close()

    def publish(self) -> None:
        """Rename the closed temporary file to NAME (:func:`commit_all`)."""
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.writer.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def commit_all(writers: list[AtomicParquet]) -> None:
    """Close every file before renaming any: a failure while writing leaves every earlier output as it was."""
    for w in writers:
        w.close()
    for w in writers:
        w.publish()


OUTPUT_FILES = ("train.parquet", "val.parquet")


def critic_dirs(critic_out: str | Path) -> dict[str, Path]:
    """--critic-out's two parquet directories: ``sft`` (the critic, verl's SFT trainer) and ``bt`` (the scorer, the
    Bradley-Terry trainer)."""
    return {"sft": Path(critic_out) / "sft", "bt": Path(critic_out) / "bt"}


def prepare_out_dirs(out: str | Path, sft_out: Optional[str | Path], sources: list[str],
                     bt_out: Optional[str | Path] = None, critic_out: Optional[str | Path] = None) -> None:  # fmt: skip
    """Check ``--out`` (and ``--sft-out``, ``--bt-out``, ``--critic-out``'s two) before anything is written, then
    create them. Refused with an InvalidInput naming the option: a path that is a file, or under one, or cannot be
    made; the same directory for two of them (their files have the same names); an input that this run would
    overwrite."""
    dirs = [("--out", Path(out)), *([("--sft-out", Path(sft_out))] if sft_out is not None else []),
            *([("--bt-out", Path(bt_out))] if bt_out is not None else []),
            *([("--critic-out", d) for d in critic_dirs(critic_out).values()] if critic_out is not None else [])]  # fmt: skip
    seen: dict = {}
    for flag, d in dirs:
        if d.resolve() in seen:
            raise InvalidInput(f"{flag} {d} is the {seen[d.resolve()]} directory: both write "
                               f"{' and '.join(OUTPUT_FILES)}; give each a directory of its own")  # fmt: skip
        seen[d.resolve()] = flag
    written = {d.resolve() / name for _, d in dirs for name in (*OUTPUT_FILES, "summary.json")}
    for source in sources:
        if Path(source).exists() and Path(source).resolve() in written:
            raise InvalidInput(f"{source}: this input is a file the run writes ({Path(source).name} under --out or "
                               "--sft-out); choose another output directory")  # fmt: skip
    for flag, d in dirs:
        if d.exists() and not d.is_dir():
            raise InvalidInput(f"{flag} {d}: exists and is not a directory")
    for flag, d in dirs:
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InvalidInput(f"{flag} {d}: cannot create the directory ({e.strerror or e})") from None
