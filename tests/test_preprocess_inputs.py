"""preprocess.pairs: multi-shard R1-Reward-RL, and inputs, outputs and options that cannot be used (issue 23).

Every refusal is one line on stderr naming the file or option, exit code 2, no traceback, and leaves
an earlier output as it was.
"""

import base64
import gzip
import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from r1reward_verl.data.pairs import main
from r1reward_verl.prompt import TABLE1_PROMPT
from tests.cli_support import one_line, run_main
from tests.support.pairs import pair, png, read, write_jsonl


def run(capsys, *args) -> tuple[int, str, str]:
    """``python -m preprocess.pairs ARGS`` in this process: exit code (argparse's too), stdout, stderr."""
    return run_main(main, capsys, *args, "--no-progress")


def rl_rows(k: int, n: int) -> list[dict]:
    """``n`` rows in R1-Reward-RL's schema (question, message, answer, image: no id column), distinct per ``k``."""
    rows = []
    for i in range(n):
        q = f"Shard {k} question {i}?"
        text = TABLE1_PROMPT.format(question=q, answer1=f"A {k}.{i}", answer2=f"B {k}.{i}")
        msg = json.dumps([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}])
        rows.append({"question": f"<image>\n{q}", "message": msg, "answer": [f"<answer>{1 + i % 2}</answer>"],
                     "image": base64.b64encode(png((k, i, 0))).decode()})  # fmt: skip
    return rows


def ids_and_splits(out) -> dict:
    return {r["extra_info"]["id"]: r["extra_info"]["split"] for s in ("train", "val") for r in read(out / f"{s}.parquet")}


def test_six_r1reward_rl_shards_convert_every_row_with_stable_ids(tmp_path, capsys):
    """The released set's layout: six shards without an id column. Every row converts (no duplicate_id
    across shards), and a row's id (so its split) depends on its content only: re-sharded into two files
    in the other order, every row keeps its id and split."""
    shards = [rl_rows(k, 4) for k in range(6)]
    (tmp_path / "six").mkdir()
    for k, rows in enumerate(shards):
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / "six" / f"train-0000{k}-of-00006.parquet")
    code, out, err = run(capsys, "--input", tmp_path / "six", "--out", tmp_path / "a", "--val-fraction", 0.5)
    assert code == 0, err
    assert "read 24 = written 24" in out and "rejected 0" in out
    a = ids_and_splits(tmp_path / "a")
    assert len(a) == 24 and {"train", "val"} == set(a.values())
    flat = [r for rows in shards for r in rows][::-1]
    (tmp_path / "two").mkdir()
    for k in range(2):
        pq.write_table(pa.Table.from_pylist(flat[12 * k : 12 * k + 12]), tmp_path / "two" / f"part-{k}.parquet")
    code, out, err = run(capsys, "--input", tmp_path / "two", "--out", tmp_path / "b", "--val-fraction", 0.5)
    assert code == 0, err
    assert ids_and_splits(tmp_path / "b") == a


def test_an_exact_copy_of_an_r1reward_rl_row_is_a_counted_duplicate(tmp_path, capsys):
    rows = rl_rows(0, 3)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "s0.parquet")
    pq.write_table(pa.Table.from_pylist(rows[:1] + rl_rows(1, 2)), tmp_path / "s1.parquet")
    code, out, err = run(capsys, "--input", tmp_path / "s0.parquet", "--input", tmp_path / "s1.parquet",
                         "--out", tmp_path / "o", "--val-fraction", 0)  # fmt: skip
    assert code == 0, err
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert (s["read"], s["written"], s["rejected_by_reason"]) == (6, 5, {"duplicate_content": 1})
    code, out, err = run(capsys, "--input", tmp_path / "s0.parquet", "--input", tmp_path / "s1.parquet",
                         "--out", tmp_path / "keep", "--val-fraction", 0, "--no-dedup")  # fmt: skip
    assert code == 0, err
    ids = [r["extra_info"]["id"] for r in read(tmp_path / "keep" / "train.parquet")]
    assert len(ids) == 6 == len(set(ids))  # --no-dedup keeps the copy, under an id of its own


def _good_run(capsys, tmp_path, out, *extra):
    src = write_jsonl(tmp_path / "good.jsonl", [pair(i) for i in range(4)])
    code, _, err = run(capsys, "--input", src, "--out", out, "--val-fraction", 0, *extra)
    assert code == 0, err
    return {p.name: p.read_bytes() for p in out.iterdir()}


def test_out_and_sft_out_the_same_directory_is_refused_and_destroys_nothing(tmp_path, capsys):
    before = _good_run(capsys, tmp_path, tmp_path / "d")
    src = write_jsonl(tmp_path / "sft.jsonl", [pair(i, reasoning=f"because {i}") for i in range(4)])
    code, out, err = run(capsys, "--input", src, "--out", tmp_path / "d", "--sft-out", tmp_path / "d" / ".")
    assert code == 2 and "--sft-out" in one_line(err)
    assert {p.name: p.read_bytes() for p in (tmp_path / "d").iterdir()} == before
    assert len(read(tmp_path / "d" / "train.parquet")) == 4


def test_bt_out_shares_no_directory_and_keeps_the_rl_rows(tmp_path, capsys):
    """``--bt-out``: every pair as chosen/rejected, the preferred response chosen whatever the RL row's swap; it may
    not share a directory with --out or --sft-out."""
    src = write_jsonl(tmp_path / "in.jsonl", [pair(i, reasoning=f"because {i}") for i in range(6)])
    for other in (["--sft-out", tmp_path / "s"], []):
        code, _, err = run(capsys, "--input", src, "--out", tmp_path / "d", *other, "--bt-out",
                           (tmp_path / "s") if other else (tmp_path / "d"))  # fmt: skip
        assert code == 2 and "--bt-out" in one_line(err) and "directory of its own" in err
    code, out, err = run(capsys, "--input", src, "--out", tmp_path / "d", "--bt-out", tmp_path / "bt", "--val-fraction", 0)
    assert code == 0, err
    rows = read(tmp_path / "bt" / "train.parquet")
    src_rows = {r["id"]: r for r in map(json.loads, src.read_text().splitlines())}
    assert len(rows) == 6 and len(read(tmp_path / "d" / "train.parquet")) == 6
    for r in rows:
        rec = src_rows[r["id"]]
        assert r["chosen_messages"][1]["content"] == rec[f"response_{rec['preferred']}"]
        assert r["rejected_messages"][1]["content"] == rec[f"response_{3 - rec['preferred']}"]
        user = r["chosen_messages"][0]["content"]
        assert user == "<image>" * len(r["images"]) + rec["question"] == r["rejected_messages"][0]["content"]
        assert len(r["images"]) == len(rec.get("images") or [])
    assert "BT {'train': 6}" in out


def test_an_input_that_this_run_would_overwrite_is_refused(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist([pair(i) for i in range(4)]), tmp_path / "data" / "train.parquet")
    before = (tmp_path / "data" / "train.parquet").read_bytes()
    code, out, err = run(capsys, "--input", tmp_path / "data" / "train.parquet", "--out", tmp_path / "data")
    assert code == 2 and "train.parquet" in one_line(err)
    assert (tmp_path / "data" / "train.parquet").read_bytes() == before


def test_a_mistyped_local_folder_is_not_taken_for_a_hub_name(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("nonexistent_dir/", "nonexistent_dir/sub/", "a/b/c"):
        code, out, err = run(capsys, "--input", name, "--out", tmp_path / "out")
        assert code == 2 and one_line(err) == f"error: {name}: no such file or directory", err
    assert not (tmp_path / "out").exists()


def test_a_hub_name_that_cannot_be_loaded_is_one_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    res = subprocess.run([sys.executable, "-m", "preprocess.pairs", "--input", "nobody-r1r/no-such-set", "--out",
                          str(tmp_path / "out"), "--no-progress"], capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert res.returncode == 2 and one_line(res.stderr).startswith("error: nobody-r1r/no-such-set: "), res.stderr
    assert not (tmp_path / "out" / "train.parquet").exists()


def _truncated_gzip(path):
    data = gzip.compress("".join(json.dumps(pair(i, question="x" * 2000 + str(i))) + "\n" for i in range(200)).encode())
    path.write_bytes(data[: len(data) // 2])


UNREADABLE = {
    "not_gzip.jsonl.gz": lambda p: p.write_bytes(b"this is not gzip data\n" * 10),
    "truncated.jsonl.gz": _truncated_gzip,
    "text.parquet": lambda p: p.write_text("id,question\n1,hello\n"),
    "truncated.parquet": lambda p: (pq.write_table(pa.Table.from_pylist([pair(i) for i in range(50)]), p),
                                    p.write_bytes(p.read_bytes()[:-100])),  # fmt: skip
}


@pytest.mark.parametrize("name", sorted(UNREADABLE))
def test_an_unreadable_file_is_one_line_naming_it(tmp_path, capsys, name):
    before = _good_run(capsys, tmp_path, tmp_path / "out")
    UNREADABLE[name](tmp_path / name)
    for extra in ((), ("--skip-invalid",)):
        code, out, err = run(capsys, "--input", tmp_path / name, "--out", tmp_path / "out", *extra)
        assert code == 2 and one_line(err).startswith(f"error: {tmp_path / name}: "), err
        assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before  # the earlier output stays


def test_a_parquet_file_with_the_wrong_columns_is_an_error_even_with_skip_invalid(tmp_path, capsys):
    pq.write_table(pa.Table.from_pylist([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]), tmp_path / "other.parquet")
    for extra in ((), ("--skip-invalid",)):
        code, out, err = run(capsys, "--input", tmp_path / "other.parquet", "--out", tmp_path / "out", *extra)
        line = one_line(err)
        assert code == 2 and line.startswith(f"error: {tmp_path / 'other.parquet'}: columns a, b fit neither"), line
    assert not (tmp_path / "out").exists()  # checked before anything is read or written
    rl = tmp_path / "rl.parquet"
    pq.write_table(pa.Table.from_pylist(rl_rows(0, 2)), rl)
    code, out, err = run(capsys, "--input", rl, "--out", tmp_path / "out", "--format", "pairs")
    assert code == 2 and "lacks id, images, response_1, response_2, preferred" in one_line(err)


def test_a_run_that_rejects_every_row_writes_nothing_unless_allow_empty(tmp_path, capsys):
    before = _good_run(capsys, tmp_path, tmp_path / "out")
    src = write_jsonl(tmp_path / "bad.jsonl", [{"a": i} for i in range(3)])
    code, out, err = run(capsys, "--input", src, "--out", tmp_path / "out", "--skip-invalid")
    assert code == 2 and "no rows written: all 3 rows read were rejected" in one_line(err)
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before
    code, out, err = run(capsys, "--input", src, "--out", tmp_path / "out", "--skip-invalid", "--allow-empty")
    assert code == 0, err
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (s["read"], s["written"], s["rejected_by_reason"]) == (3, 0, {"missing_field": 3})


@pytest.mark.parametrize("option, value", [("--val-fraction", "1"), ("--val-fraction", "-0.1"), ("--val-fraction", "x"),
                                           ("--max-pixels", "10"), ("--max-pixels", "0"), ("--workers", "0")])  # fmt: skip
def test_an_unusable_option_is_one_line_naming_it(tmp_path, capsys, option, value):
    src = write_jsonl(tmp_path / "in.jsonl", [pair(0), pair(1)])
    code, out, err = run(capsys, "--input", src, "--out", tmp_path / "out", option, value)
    assert code == 2 and option in one_line(err)
    assert not (tmp_path / "out").exists()


def test_max_pixels_at_the_smallest_image_qwen_reads(tmp_path, capsys):
    (tmp_path / "big.png").write_bytes(png(size=(400, 100)))
    src = write_jsonl(tmp_path / "in.jsonl", [pair(0, images=["big.png"])])
    code, out, err = run(capsys, "--input", src, "--out", tmp_path / "out", "--max-pixels", 784, "--val-fraction", 0)
    assert code == 0, err
    from PIL import Image
    import io

    (row,) = read(tmp_path / "out" / "train.parquet")
    w, h = Image.open(io.BytesIO(row["images"][0]["bytes"])).size
    assert w * h <= 784 and abs(w / h - 4) < 0.5  # aspect kept


def test_an_out_that_is_a_file_is_one_line(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", [pair(0), pair(1)])
    (tmp_path / "afile").write_text("keep me")
    for out_dir in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        for flag in ("--out", "--sft-out"):
            args = ["--out", out_dir] if flag == "--out" else ["--out", tmp_path / "ok", "--sft-out", out_dir]
            code, out, err = run(capsys, "--input", src, *args)
            assert code == 2 and one_line(err).startswith(f"error: {flag} {out_dir}: "), err
    assert (tmp_path / "afile").read_text() == "keep me"
