"""preprocess.pairs --processor / --max-prompt-tokens / --max-sft-tokens / --max-images / --drop-overlong (issue 24).

Our token counts are judged by verl itself on the parquet we write: ``RLHFDataset`` (filter_overlong_prompts)
must keep exactly the rows we count as within ``--max-prompt-tokens``, and ``MultiTurnSFTDataset``
(truncation: error) must raise on exactly the SFT rows we count as over ``--max-sft-tokens``, at limits
set to our own counts (so an off-by-one either way shows).
"""

import base64
import contextlib
import io
import json
import os
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from r1reward_verl.data.pairs import convert, main
from tests.cli_support import one_line, run_main
from tests.support.pairs import pair, png, read, write_jsonl


def b64(size) -> str:
    return base64.b64encode(png(size=size)).decode()


REPO = Path(__file__).resolve().parents[1]
BIG, SMALL = (600, 600), (28, 28)  # the tiny processor: 16 and 4 image tokens (its max and min)


def rows() -> list[dict]:
    """Five pairs whose prompts differ in length: a big image, a small one, none, both, and long responses."""
    return [pair(0, images=[b64(BIG)], reasoning="Response one names the colour."),
            pair(1, images=[b64(SMALL)], reasoning="Response two is right."),
            pair(2, reasoning="Both are short; the first is right."),
            pair(3, images=[b64(BIG), b64(SMALL)], reasoning="Only the second one counts them " * 8),
            pair(4, response_1="a long answer " * 40, reasoning="The long one rambles.")]  # fmt: skip


def counts(summary: dict, kind: str) -> dict[str, int]:
    """Our count per id, from summary.json's ``longest`` (it lists all of at most five rows)."""
    return {x["row"].split("(id ")[1].rstrip(")"): x["length"] for x in summary["longest"][kind]}


def quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def verl_rl_kept(path, tiny, limit: int, cache) -> set[str]:
    """The ids verl's RLHFDataset keeps from ``path`` at ``max_prompt_length=limit`` (its own filter)."""
    from verl.utils import hf_processor, hf_tokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset

    cfg = OmegaConf.create({"max_prompt_length": limit, "filter_overlong_prompts": True,
                            "filter_overlong_prompts_workers": None, "cache_dir": str(cache)})  # fmt: skip
    ds = quiet(RLHFDataset, str(path), hf_tokenizer(tiny), cfg, hf_processor(tiny))
    return {r["extra_info"]["id"] for r in ds.dataframe}


def test_prompt_counts_agree_with_verl_rlhfdataset_row_by_row(tmp_path, tiny_model_dir):
    src = str(write_jsonl(tmp_path / "in.jsonl", rows()))
    s = convert([src], tmp_path / "all", val_fraction=0.0, progress=False, processor=tiny_model_dir)
    ours = counts(s, "prompt_tokens")
    assert len(ours) == 5 and ours["p0"] - ours["p1"] == 12  # 16 - 4 image tokens, same text
    assert len(set(ours.values())) == 5, ours
    written = tmp_path / "all" / "train.parquet"
    for limit in sorted({c for n in ours.values() for c in (n - 1, n)}):
        within = {i for i, n in ours.items() if n <= limit}
        assert verl_rl_kept(written, tiny_model_dir, limit, tmp_path / "cache") == within, limit
    # --drop-overlong at the small-image row's count: the rows above it are dropped and counted
    limit = ours["p1"]
    over = {i for i, n in ours.items() if n > limit}
    assert over and len(over) < 5
    d = convert([src], tmp_path / "drop", val_fraction=0.0, progress=False, processor=tiny_model_dir,
                max_prompt_tokens=limit, drop_overlong=True)  # fmt: skip
    assert (d["read"], d["written"], d["rejected_by_reason"]) == (5, 5 - len(over), {"overlong_prompt": len(over)})
    assert d["balanced"] and d["over_limit"] == {"overlong_prompt": len(over)}
    kept = {r["extra_info"]["id"] for r in read(tmp_path / "drop" / "train.parquet")}
    assert kept == set(ours) - over == verl_rl_kept(tmp_path / "drop/train.parquet", tiny_model_dir, limit, tmp_path)
    assert "tokens > --max-prompt-tokens" in d["first_rejected_row_by_reason"]["overlong_prompt"]
    # without --drop-overlong every row is written, and the ones over are reported
    k = convert([src], tmp_path / "keep", val_fraction=0.0, progress=False, processor=tiny_model_dir,
                max_prompt_tokens=limit)
    assert (k["written"], k["rejected"], k["over_limit"]) == (5, 0, {"overlong_prompt": len(over)})
    assert {x.split("(id ")[1].split(")")[0] for x in k["first_over_limit_rows"]["overlong_prompt"]} == over
    assert json.loads((tmp_path / "keep" / "summary.json").read_text())["over_limit"] == k["over_limit"]


def test_sft_counts_agree_with_verl_multiturn_sft_dataset(tmp_path, tiny_model_dir):
    from verl.utils import hf_processor, hf_tokenizer
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    src = str(write_jsonl(tmp_path / "in.jsonl", rows()))
    s = convert([src], tmp_path / "rl", sft_out=tmp_path / "sft", val_fraction=0.0, progress=False,
                processor=tiny_model_dir)
    ours = counts(s, "sft_tokens")
    assert len(ours) == 5 and s["sft_written_by_split"] == {"train": 5}
    limit = sorted(ours.values())[2]  # the middle row is exactly at the limit: kept (verl raises on > max_length)
    cfg = OmegaConf.create({"max_length": limit, "truncation": "error", "pad_mode": "no_padding"})
    ds = quiet(MultiTurnSFTDataset, str(tmp_path / "sft" / "train.parquet"), hf_tokenizer(tiny_model_dir), cfg,
               hf_processor(tiny_model_dir))  # fmt: skip
    for i, r in enumerate(read(tmp_path / "sft" / "train.parquet")):
        if ours[r["id"]] > limit:
            with pytest.raises(ValueError, match="is larger than"):
                ds[i]
        else:
            assert len(ds[i]["input_ids"]) == ours[r["id"]]
    d = convert([src], tmp_path / "rl2", sft_out=tmp_path / "sft2", val_fraction=0.0, progress=False,
                processor=tiny_model_dir, max_sft_tokens=limit, drop_overlong=True)  # fmt: skip
    assert d["sft_rejected_by_reason"] == {"overlong_sft": 2} and d["sft_written_by_split"] == {"train": 3}
    assert (d["read"], d["written"], d["rejected"]) == (5, 5, 0)  # the RL rows are judged on their own limit
    kept = read(tmp_path / "sft2" / "train.parquet")
    assert {r["id"] for r in kept} == {i for i, n in ours.items() if n <= limit}
    ds = quiet(MultiTurnSFTDataset, str(tmp_path / "sft2" / "train.parquet"), hf_tokenizer(tiny_model_dir), cfg,
               hf_processor(tiny_model_dir))  # fmt: skip
    assert all(len(ds[i]["input_ids"]) <= limit for i in range(len(kept)))


def test_max_images_counts_keeps_or_drops_and_the_labels_stay_balanced(tmp_path, capsys):
    recs = [pair(i, images=[b64((28 + i, 28))] * (1 + i % 3), preferred=1) for i in range(12)]  # 1, 2 or 3 images
    src = write_jsonl(tmp_path / "in.jsonl", recs)
    code, out, err = run_main(main, capsys, "--input", src, "--out", tmp_path / "keep", "--max-images", 2,
                              "--val-fraction", 0, "--no-progress")  # fmt: skip
    assert code == 0, err
    assert "warning: 4 RL rows over --max-images 2 (longest 3 images" in err and "kept: vLLM refuses" in err
    s = json.loads((tmp_path / "keep" / "summary.json").read_text())
    assert (s["written"], s["over_limit"], s["longest"]["images"][0]["length"]) == (12, {"too_many_images": 4}, 3)
    code, out, err = run_main(main, capsys, "--input", src, "--out", tmp_path / "drop", "--max-images", 2,
                              "--val-fraction", 0, "--drop-overlong", "--no-progress")  # fmt: skip
    assert code == 0, err
    assert "read 12 = written 8 {'train': 8} + rejected 4 {'too_many_images': 4}" in out
    assert "dropped, counted in rejected_by_reason (too_many_images)" in err
    written = read(tmp_path / "drop" / "train.parquet")
    assert len(written) == 8 and all(len(r["images"]) <= 2 for r in written)
    labels = [r["reward_model"]["ground_truth"] for r in written]
    assert labels.count("1") == labels.count("2") == 4  # a dropped row leaves its label target to the next
    # the default cap is the configs' limit_images: 4; --no-drop-overlong (after the script's --drop-overlong) keeps
    code, out, err = run_main(main, capsys, "--input", src, "--out", tmp_path / "default", "--val-fraction", 0,
                              "--drop-overlong", "--no-drop-overlong", "--no-progress")  # fmt: skip
    assert code == 0 and "read 12 = written 12" in out and "warning" not in err
    assert json.loads((tmp_path / "default" / "summary.json").read_text())["limits"]["max_images"] == 4


def test_worker_processes_count_the_same(tmp_path, tiny_model_dir):
    more = [pair(10 + i, images=[b64((30 * i + 28, 28))]) for i in range(6)]
    src = str(write_jsonl(tmp_path / "in.jsonl", rows() + more))
    kw = dict(val_fraction=0.3, progress=False, processor=tiny_model_dir, max_prompt_tokens=250, max_sft_tokens=400)
    one = convert([src], tmp_path / "one", sft_out=tmp_path / "s1", workers=1, **kw)
    two = convert([src], tmp_path / "two", sft_out=tmp_path / "s2", workers=2, **kw)
    assert one == two and one["over_limit"]["overlong_prompt"] and one["over_limit"]["overlong_sft"]
    for split in ("train", "val"):
        assert read(tmp_path / "one" / f"{split}.parquet") == read(tmp_path / "two" / f"{split}.parquet")
        assert read(tmp_path / "s1" / f"{split}.parquet") == read(tmp_path / "s2" / f"{split}.parquet")


@pytest.mark.parametrize(
    "args, says",
    [(["--max-prompt-tokens", "0", "--processor", "x"], "argument --max-prompt-tokens: wants an integer >= 1, got 0"),
     (["--max-sft-tokens", "-3", "--processor", "x"], "argument --max-sft-tokens: wants an integer >= 1, got -3"),
     (["--max-images", "0"], "argument --max-images: wants an integer >= 1, got 0"),
     (["--max-prompt-tokens", "8192"], "argument --max-prompt-tokens: needs --processor"),
     (["--max-sft-tokens", "8192"], "argument --max-sft-tokens: needs --processor")],
)  # fmt: skip
def test_cli_bad_limit_options_are_one_line_naming_the_option(tmp_path, capsys, args, says):
    src = write_jsonl(tmp_path / "in.jsonl", [pair(0)])
    code, out, err = run_main(main, capsys, "--input", src, "--out", tmp_path / "out", *args, "--no-progress")
    assert code == 2 and says in one_line(err)
    assert not (tmp_path / "out").exists()


def test_cli_processor_that_cannot_be_loaded_is_one_line_before_any_output(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", [pair(0)])
    (tmp_path / "not_a_model").mkdir()
    code, out, err = run_main(main, capsys, "--input", src, "--out", tmp_path / "out", "--processor",
                              tmp_path / "not_a_model", "--max-prompt-tokens", 100, "--no-progress")  # fmt: skip
    assert code == 2
    says = f"error: --processor {tmp_path / 'not_a_model'}: cannot be loaded as a multimodal processor"
    assert one_line(err).startswith(says)
    assert not (tmp_path / "out").exists()



def script_commands(tmp_path, name: str, *flags, **env) -> list[list[str]]:
    """The commands ``examples/NAME`` runs, with a stand-in for ``$PYTHON`` that only records its arguments."""
    tmp_path.mkdir(exist_ok=True)
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\nprintf "%s\\037" "$@" >> "$ARGS_FILE"; printf "\\n" >> "$ARGS_FILE"\n')
    fake.chmod(0o755)
    log = tmp_path / "args.log"
    env = {**os.environ, "PYTHON": str(fake), "ARGS_FILE": str(log), **env}
    res = subprocess.run(["bash", str(REPO / "examples" / name), *flags], env=env, capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert res.returncode == 0, res.stderr
    return [line.rstrip("\x1f").split("\x1f") for line in log.read_text().splitlines()]


def test_example_scripts_bound_count_and_drop_by_default_and_the_user_flags_come_last(tmp_path):
    common = ["--max-pixels", "1003520", "--max-images", "4", "--drop-overlong"]
    (cmd,) = script_commands(tmp_path / "rl", "prepare_rl_data.sh", "--max-prompt-tokens", "20480",
                             "--no-drop-overlong", R1R_DATA_DIR="/out", R1R_BASE_MODEL="", R1R_RL_INPUT="in")  # fmt: skip
    assert cmd == ["-m", "preprocess.pairs", "--input", "in", "--out", "/out", "--val-fraction", "0.02", *common,
                   "--processor", "Qwen/Qwen2.5-VL-7B-Instruct", "--max-prompt-tokens", "8192",
                   "--max-prompt-tokens", "20480", "--no-drop-overlong"]  # the user's flags last: argparse takes them
    (cmd,) = script_commands(tmp_path / "rl0", "prepare_rl_data.sh", R1R_DATA_DIR="/out", R1R_PROCESSOR="")
    assert "--processor" not in cmd and "--max-prompt-tokens" not in cmd and cmd[-5:] == common
    env = dict(R1R_PAIRS="p.jsonl", R1R_SFT_DIR=str(tmp_path / "sft"), R1R_DATA_DIR="/rl", R1R_PROCESSOR="/ckpt")
    annotate, pairs = script_commands(tmp_path / "sft", "make_sft_data.sh", "--workers", "8", **env)
    assert annotate[:2] == ["-m", "preprocess.annotate"]
    assert pairs == ["-m", "preprocess.pairs", "--input", str(tmp_path / "sft" / "annotated.jsonl"), "--out", "/rl",
                     "--sft-out", str(tmp_path / "sft"), "--difficulty-filter", *common, "--processor", "/ckpt",
                     "--max-prompt-tokens", "8192", "--max-sft-tokens", "8192", "--workers", "8"]  # fmt: skip
