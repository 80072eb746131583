"""preprocess.pairs: every input format from generated files, verl's datasets, balance, filters, bad input."""

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf
from PIL import Image

from r1reward_verl.data.make_sample import make_sample
from r1reward_verl.data.pairs import InvalidInput, convert, main
from r1reward_verl.prompt import TABLE1_PROMPT
from tests.support.pairs import pair, png, read, write_jsonl


def test_jsonl_with_every_image_form(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(png((1, 2, 3)))
    raw = png((4, 5, 6))
    records = [
        pair(0, images=["img/a.png"]),  # relative path
        pair(1, images=[str(tmp_path / "img" / "a.png")]),  # absolute path
        pair(2, images=[base64.b64encode(raw).decode()]),  # bare base64
        pair(3, images=["data:image/png;base64," + base64.b64encode(raw).decode()]),  # data URI
        pair(4, images=[]),  # text-only
        pair(5, images=["img/a.png", "data:image/png;base64," + base64.b64encode(raw).decode()]),
    ]
    s = convert([str(write_jsonl(tmp_path / "in.jsonl", records))], tmp_path / "out", val_fraction=0.0, progress=False)
    assert s["read"] == 6 and s["written"] == 6 and s["rejected"] == 0
    rows = {r["extra_info"]["id"]: r for r in read(tmp_path / "out" / "train.parquet")}
    assert rows["p0"]["images"][0]["bytes"] == png((1, 2, 3)) and rows["p0"]["images"][0]["path"].endswith("a.png")
    assert rows["p2"]["images"][0]["bytes"] == raw and rows["p3"]["images"][0]["bytes"] == raw
    assert rows["p4"]["images"] == [] and len(rows["p5"]["images"]) == 2
    p5 = rows["p5"]["prompt"][0]["content"]
    assert p5.startswith("<image><image>You are a highly skilled") and p5.count("<image>") == 2
    assert rows["p4"]["prompt"][0]["content"].startswith("You are a highly skilled")


def test_parquet_input_with_bytes_images_and_table1_prompt(tmp_path):
    recs = [pair(i, images=[png((i, i, i))]) for i in range(10)]
    pq.write_table(pa.Table.from_pylist(recs), tmp_path / "in.parquet")
    convert([str(tmp_path / "in.parquet")], tmp_path / "out", val_fraction=0.0, progress=False)
    for r in read(tmp_path / "out" / "train.parquet"):
        i = int(r["extra_info"]["id"][1:])
        first, second = (f"first {i}", f"second {i}")
        if r["extra_info"]["swapped"]:
            first, second = second, first
        expected = "<image>" + TABLE1_PROMPT.format(question=f"Question {i}?", answer1=first, answer2=second)
        assert r["prompt"] == [{"role": "user", "content": expected}]
        truth = 1 + i % 2 if not r["extra_info"]["swapped"] else 2 - i % 2
        assert r["reward_model"] == {"style": "rule", "ground_truth": str(truth)}
        assert r["images"][0]["bytes"] == png((i, i, i)) and r["ability"] == "reward_modeling"


def test_r1reward_rl_rows(tmp_path):
    def message(q, a, b):
        text = TABLE1_PROMPT.format(question=q, answer1=a, answer2=b)
        return json.dumps([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}])

    b64 = base64.b64encode(png()).decode()
    rows = [{"question": "<image>\nWhat is shown?", "message": message("What is shown?", "A cat.", "A dog."),
             "answer": ["<answer>2</answer>"], "image": b64},
            {"question": "Count?", "message": message("Count?", "Three\nitems.", "Two."), "answer": ["1"], "image": b64},
            {"question": "Bad", "message": "no template here", "answer": ["1"], "image": b64}]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train-00000-of-00001.parquet")
    s = convert([str(tmp_path / "train-00000-of-00001.parquet")], tmp_path / "out", val_fraction=0.0,
                skip_invalid=True, progress=False)  # fmt: skip
    assert s["read"] == 3 and s["written"] == 2 and s["rejected_by_reason"] == {"unparsable_prompt": 1}
    out = {r["extra_info"]["question"]: r for r in read(tmp_path / "out" / "train.parquet")}
    content = out["Count?"]["prompt"][0]["content"]
    assert "[Response 1]: Three\nitems.\n[Response 2]: Two." in content or "[Response 1]: Two.\n[Response 2]: Three\nitems." in content
    assert out["What is shown?"]["extra_info"]["source"] == "R1-Reward-RL"


def test_r1reward_rl_authors_markdown_layout(tmp_path):
    """The released rows put each section under a '###### ' heading and end with a bold Output Format heading."""
    text = ("You are a highly skilled judge.\n\n###### [Question]:\nWhich is right?  \n\n"
            "###### [Response 1]:\nUse C#  \n\n###### [Response 2]:\nIt is 4.\n\n## Steps  \n\n"
            "###### **Output Format (strictly follow):**\n<think>...</think><answer>1/2</answer>")  # fmt: skip
    msg = json.dumps([{"role": "user", "content": [{"type": "text", "text": text},
                                                   {"type": "image", "image": "/abs/x.png"}]}])  # fmt: skip
    rows = [{"question": "<image>\nWhich is right?", "message": msg, "answer": ["<answer>1</answer>"],
             "image": base64.b64encode(png()).decode()}]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rl.parquet")
    s = convert([str(tmp_path / "rl.parquet")], tmp_path / "out", val_fraction=0.0, progress=False)
    assert s["written"] == 1
    (r,) = read(tmp_path / "out" / "train.parquet")
    assert r["extra_info"]["question"] == "Which is right?"
    content = r["prompt"][0]["content"]
    # the heading marks are gone, a response's own '#' and its inner headings stay
    a, b = ("Use C#", "It is 4.\n\n## Steps")[:: -1 if r["extra_info"]["swapped"] else 1]
    assert f"[Response 1]: {a}\n[Response 2]: {b}\n" in content, content
    assert "######" not in content
    assert r["reward_model"]["ground_truth"] == ("2" if r["extra_info"]["swapped"] else "1")


def test_balance_is_exact_seeded_and_recorded(tmp_path):
    recs = [pair(i, preferred=1) for i in range(101)]  # all label 1 in the input
    src = str(write_jsonl(tmp_path / "in.jsonl", recs))
    s1 = convert([src], tmp_path / "a", val_fraction=0.2, seed=7, progress=False)
    s2 = convert([src], tmp_path / "b", val_fraction=0.2, seed=7, progress=False)
    for split in ("train", "val"):
        labels = s1["labels_by_split"][split]
        assert abs(labels.get("1", 0) - labels.get("2", 0)) <= 1
        a, b = read(tmp_path / "a" / f"{split}.parquet"), read(tmp_path / "b" / f"{split}.parquet")
        assert a == b  # reproducible
        for r in a:
            assert r["extra_info"]["swapped"] == (r["reward_model"]["ground_truth"] == "2")
    assert s1["written_by_split"]["val"] > 0 and s1["swapped"] == sum(s1["labels_by_split"][k].get("2", 0) for k in ("train", "val"))
    s3 = convert([src], tmp_path / "c", val_fraction=0.2, seed=8, progress=False)
    assert read(tmp_path / "c" / "train.parquet") != read(tmp_path / "a" / "train.parquet")


def test_difficulty_filter_and_dedup(tmp_path):
    recs = [pair(0, attempts=1), pair(1, attempts=2), pair(2, attempts=3), pair(3, attempts="failed"),
            pair(4, attempts=1), pair(5, attempts=2, question="Question 1?", response_1="second 1",
                                         response_2="first 1")]  # same pair as p1, responses swapped
    s = convert([str(write_jsonl(tmp_path / "in.jsonl", recs))], tmp_path / "out", val_fraction=0.0,
                difficulty_filter=True, progress=False)  # fmt: skip
    assert s["read"] == 6 and s["written"] == 3
    assert s["rejected_by_reason"] == {"difficulty_filtered": 2, "duplicate_content": 1}
    ids = sorted(r["extra_info"]["id"] for r in read(tmp_path / "out" / "train.parquet"))
    assert ids == ["p1", "p2", "p3"]
    assert {r["extra_info"]["attempts"] for r in read(tmp_path / "out" / "train.parquet")} == {"2", "3", "failed"}


BAD = {
    "missing_image": pair(0, images=["nope.png"]),
    "undecodable_image": pair(0, images=[base64.b64encode(b"not an image at all" * 40).decode()]),
    "bad_label": pair(0, preferred=3),
    "empty_response": pair(0, response_2="   "),
    "missing_field": {k: v for k, v in pair(0).items() if k != "question"},
    "bad_json": "{not json",
    "bad_attempts": pair(0, attempts="often"),
    "identical_responses": pair(0, response_1="The same  answer.", response_2=" The same\nanswer. "),
}


@pytest.mark.parametrize("reason", sorted(BAD))
def test_bad_input_names_file_and_row_or_is_counted(tmp_path, reason):
    src = write_jsonl(tmp_path / "in.jsonl", [pair(10), pair(11), BAD[reason], pair(12)])
    with pytest.raises(InvalidInput, match=rf"in\.jsonl: row 3: {reason}"):
        convert([str(src)], tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "train.parquet").exists()  # nothing that looks whole
    assert not list((tmp_path / "out").glob(".*.tmp"))
    s = convert([str(src)], tmp_path / "out", skip_invalid=True, progress=False)
    assert (s["read"], s["written"], s["rejected_by_reason"]) == (4, 3, {reason: 1})
    assert "in.jsonl:3" in s["first_rejected_row_by_reason"][reason]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["rejected_by_reason"] == {reason: 1}


def test_duplicate_id_is_bad_input(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [pair(0), pair(1), pair(0, question="other")])
    with pytest.raises(InvalidInput, match="row 3: duplicate_id"):
        convert([str(src)], tmp_path / "out", progress=False)
    s = convert([str(src)], tmp_path / "out", skip_invalid=True, progress=False)
    assert s["rejected_by_reason"] == {"duplicate_id": 1} and s["written"] == 2


def test_placeholders_in_text_are_defused(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [pair(0, response_1="see <image> here", images=[base64.b64encode(png()).decode()])])
    s = convert([str(src)], tmp_path / "out", val_fraction=0.0, progress=False)
    row = read(tmp_path / "out" / "train.parquet")[0]
    assert row["prompt"][0]["content"].count("<image>") == 1 and "< image>" in row["prompt"][0]["content"]
    assert s["sanitized_placeholders"] == 1 and row["extra_info"]["sanitized"] is True


def test_max_pixels_downscales_large_images_and_counts_them(tmp_path, tiny_model_dir):
    from verl.utils import hf_processor, hf_tokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset

    (tmp_path / "big.png").write_bytes(png(size=(400, 200)))
    recs = [pair(0, images=["big.png"]), pair(1, images=["big.png"]),  # the same file twice (cache hit)
            pair(2, images=[base64.b64encode(png(size=(56, 28))).decode()])]  # small: kept as is  # fmt: skip
    src = write_jsonl(tmp_path / "in.jsonl", recs)
    s = convert([str(src)], tmp_path / "out", val_fraction=0.0, progress=False, max_pixels=20000)
    assert s["resized_images"] == 2
    sizes = {r["extra_info"]["id"]: Image.open(io.BytesIO(r["images"][0]["bytes"])).size
             for r in read(tmp_path / "out" / "train.parquet")}  # fmt: skip
    assert sizes == {"p0": (200, 100), "p1": (200, 100), "p2": (56, 28)}  # aspect kept, <= 20000 pixels
    # verl's dataset hands the model the smaller image (qwen_vl_utils rounds to multiples of 28)
    s2 = convert([str(src)], tmp_path / "full", val_fraction=0.0, progress=False)
    assert s2["resized_images"] == 0
    cfg = OmegaConf.create({"max_prompt_length": 4096, "filter_overlong_prompts_workers": None, "cache_dir": str(tmp_path / "cache")})
    tok, proc = hf_tokenizer(tiny_model_dir), hf_processor(tiny_model_dir)
    grid = [RLHFDataset(str(tmp_path / d / "train.parquet"), tok, cfg, proc)[0] for d in ("out", "full")]
    seen = [it["raw_prompt"][0]["content"][0]["image"].size for it in grid]
    assert seen[0][0] * seen[0][1] <= 20000 < seen[1][0] * seen[1][1], seen
    with pytest.raises(ValueError, match="max_pixels"):
        convert([str(src)], tmp_path / "bad", val_fraction=0.0, progress=False, max_pixels=10)


def test_rl_parquet_through_verl_rlhfdataset(tmp_path, tiny_model_dir):
    from verl.utils import hf_processor, hf_tokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset

    sample = make_sample(tmp_path / "sample", rows=12)
    convert([str(sample)], tmp_path / "out", val_fraction=0.0, progress=False)
    ds = RLHFDataset(str(tmp_path / "out" / "train.parquet"), hf_tokenizer(tiny_model_dir),
                     OmegaConf.create({"max_prompt_length": 4096, "filter_overlong_prompts_workers": None, "cache_dir": str(tmp_path / "cache")}),
                     hf_processor(tiny_model_dir))  # fmt: skip
    assert len(ds) == 12
    item = ds[0]
    content = item["raw_prompt"][0]["content"]
    assert content[0]["type"] == "image" and isinstance(content[0]["image"], Image.Image)
    assert content[1]["type"] == "text" and "[Response 1]:" in content[1]["text"]
    assert item["reward_model"]["ground_truth"] in ("1", "2") and item["extra_info"]["question"]


def test_sft_parquet_through_verl_multiturn_sft_dataset(tmp_path, tiny_model_dir):
    from verl.utils import hf_processor, hf_tokenizer
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    sample = make_sample(tmp_path / "sample", rows=8)
    s = convert([str(sample)], tmp_path / "out", sft_out=tmp_path / "sft", val_fraction=0.0, progress=False)
    assert s["sft_written_by_split"] == {"train": 8}
    rows = read(tmp_path / "sft" / "train.parquet")
    src = {json.loads(line)["id"]: json.loads(line) for line in sample.read_text().splitlines()}
    for r in rows:  # the SFT row keeps the order the reasoning was written for
        assert r["messages"][1]["content"] == f"<think>{src[r['id']]['reasoning']}</think><answer>{src[r['id']]['preferred']}</answer>"
        assert f"[Response 1]: {src[r['id']]['response_1']}" in r["messages"][0]["content"]
    ds = MultiTurnSFTDataset(str(tmp_path / "sft" / "train.parquet"), hf_tokenizer(tiny_model_dir),
                             OmegaConf.create({"max_length": 2048}), hf_processor(tiny_model_dir))  # fmt: skip
    item = ds[0]
    assert item["loss_mask"].sum() > 0 and "pixel_values" in item["multi_modal_inputs"]


def test_cli_and_sample_script_are_reproducible(tmp_path):
    a = make_sample(tmp_path / "a")
    b = make_sample(tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()
    bundled = Path(__file__).resolve().parents[1] / "r1reward_verl" / "data" / "sample_data" / "pairs.jsonl"
    assert bundled.read_bytes() == a.read_bytes()  # the committed sample is what the script makes
    assert sorted(p.name for p in (tmp_path / "a" / "images").iterdir()) == sorted(
        p.name for p in bundled.parent.joinpath("images").iterdir())  # fmt: skip
    out = subprocess.run([sys.executable, "-m", "preprocess.pairs", "--input", str(a), "--out", str(tmp_path / "o"),
                          "--no-progress"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "read 36 = written 36" in out.stdout
    bad = write_jsonl(tmp_path / "bad.jsonl", [pair(0, preferred="x")])
    out = subprocess.run([sys.executable, "-m", "preprocess.pairs", "--input", str(bad), "--out", str(tmp_path / "o2"),
                          "--no-progress"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 2 and "bad.jsonl: row 1: bad_label" in out.stderr


def test_worker_processes_give_identical_output_and_errors(tmp_path):
    (tmp_path / "img").mkdir()
    for i in range(5):
        (tmp_path / "img" / f"{i}.png").write_bytes(png((i, 0, 0)))
    recs = [pair(i, images=[f"img/{i % 5}.png"]) for i in range(700)]
    recs[650] = pair(650, preferred=7)
    src = str(write_jsonl(tmp_path / "in.jsonl", recs))
    one = convert([src], tmp_path / "one", val_fraction=0.1, skip_invalid=True, progress=False, workers=1)
    two = convert([src], tmp_path / "two", val_fraction=0.1, skip_invalid=True, progress=False, workers=2)
    assert one == two and one["rejected_by_reason"] == {"bad_label": 1} and "in.jsonl:651" in one["first_rejected_row_by_reason"]["bad_label"]
    for split in ("train", "val"):
        assert read(tmp_path / "one" / f"{split}.parquet") == read(tmp_path / "two" / f"{split}.parquet")
    with pytest.raises(InvalidInput, match="row 651: bad_label"):
        convert([src], tmp_path / "three", progress=False, workers=2)


def test_json_list_and_gzip_inputs_and_a_missing_file(tmp_path):
    import gzip

    recs = [pair(i, images=[base64.b64encode(png()).decode()]) for i in range(4)]
    (tmp_path / "list.json").write_text(json.dumps(recs))
    with gzip.open(tmp_path / "lines.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in recs))
    for name in ("list.json", "lines.jsonl.gz"):
        s = convert([str(tmp_path / name)], tmp_path / name.replace(".", "_"), val_fraction=0.0, progress=False)
        assert s["read"] == s["written"] == 4, name
    # a relative path with a data-file suffix is a missing file, never taken for a hub dataset name
    with pytest.raises(FileNotFoundError, match="no such file"):
        convert(["data/missing.jsonl"], tmp_path / "x", val_fraction=0.0, progress=False)


def _cli(capsys, *args) -> tuple[int, str, str]:
    """``python -m preprocess.pairs ARGS`` in this process (its ``main``): exit code, stdout, stderr."""
    code = main([*map(str, args), "--no-progress"])
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_cli_missing_or_unsupported_input_is_one_line_naming_it(tmp_path, capsys):
    good = write_jsonl(tmp_path / "good.jsonl", [pair(0), pair(1)])
    missing = tmp_path / "nope" / "pairs.jsonl"
    code, out, err = _cli(capsys, "--input", good, "--input", missing, "--out", tmp_path / "out")
    assert code == 2 and _one_error_line(err) == f"error: {missing}: no such file"
    assert not (tmp_path / "out").exists()  # checked before anything is read or written
    (tmp_path / "notes.txt").write_text("id,question\n")
    code, out, err = _cli(capsys, "--input", tmp_path / "notes.txt", "--out", tmp_path / "out")
    assert code == 2 and _one_error_line(err).startswith(f"error: {tmp_path / 'notes.txt'}: unsupported input")
    # the real entry point: exit code 2, the message on stderr, no traceback
    res = subprocess.run([sys.executable, "-m", "preprocess.pairs", "--input", str(missing), "--out",
                          str(tmp_path / "o"), "--no-progress"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 2 and res.stdout == "" and f"error: {missing}: no such file" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "o").exists()


@pytest.mark.parametrize("content", ["", "\n\n  \n", "[]"], ids=["empty", "blank_lines", "empty_list"])
def test_cli_empty_input_fails_unless_allowed_and_counted(tmp_path, capsys, content):
    empty = tmp_path / ("empty.json" if content == "[]" else "empty.jsonl")
    empty.write_text(content)
    code, out, err = _cli(capsys, "--input", empty, "--out", tmp_path / "out")
    assert code == 2 and _one_error_line(err).startswith(f"error: no rows read from {empty}")
    assert not (tmp_path / "out" / "train.parquet").exists() and not (tmp_path / "out" / "summary.json").exists()
    good = write_jsonl(tmp_path / "good.jsonl", [pair(0), pair(1), pair(2)])
    code, out, err = _cli(capsys, "--input", good, "--input", empty, "--out", tmp_path / "out", "--allow-empty",
                          "--val-fraction", 0)  # fmt: skip
    assert code == 0, err
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (s["read"], s["written"], s["rejected"], s["empty_inputs"]) == (3, 3, 0, [str(empty)])
    assert "read 3 = written 3" in out and "empty inputs 1" in out
    assert len(read(tmp_path / "out" / "train.parquet")) == 3


def test_cli_identical_responses_are_a_bad_row(tmp_path, capsys):
    recs = [pair(0), pair(1, response_2="first 1"),  # identical
            pair(2, response_1="Same\tanswer ", response_2=" Same answer"),  # identical after whitespace
            pair(3, response_2="FIRST 3")]  # differs in case only: a different response  # fmt: skip
    src = write_jsonl(tmp_path / "in.jsonl", recs)
    code, out, err = _cli(capsys, "--input", src, "--out", tmp_path / "out")
    assert code == 2 and "in.jsonl: row 2: identical_responses:" in _one_error_line(err)
    assert not (tmp_path / "out" / "train.parquet").exists()
    code, out, err = _cli(capsys, "--input", src, "--out", tmp_path / "out", "--skip-invalid", "--val-fraction", 0)
    assert code == 0, err
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (s["read"], s["written"], s["rejected_by_reason"]) == (4, 2, {"identical_responses": 2})
    assert sorted(r["extra_info"]["id"] for r in read(tmp_path / "out" / "train.parquet")) == ["p0", "p3"]


def test_cli_directory_input_reads_its_shards(tmp_path, capsys):
    """``--input DIR`` (as examples/prepare_rl_data.sh documents for R1-Reward-RL's local ``data/``) reads
    the directory's data files in name order; errors name the shard and its row."""
    shards = tmp_path / "data"
    shards.mkdir()
    for k in range(2):
        recs = [pair(10 * k + i, images=[png((k, i, 0))]) for i in range(3)]
        pq.write_table(pa.Table.from_pylist(recs), shards / f"train-0000{k}-of-00002.parquet")
    (shards / "README.md").write_text("not data")
    code, out, err = _cli(capsys, "--input", shards, "--out", tmp_path / "out", "--val-fraction", 0)
    assert code == 0, err
    assert "read 6 = written 6" in out
    ids = sorted(r["extra_info"]["id"] for r in read(tmp_path / "out" / "train.parquet"))
    assert ids == ["p0", "p1", "p10", "p11", "p12", "p2"]
    pq.write_table(pa.Table.from_pylist([pair(20), pair(21, preferred=0)]), shards / "train-00002-of-00003.parquet")
    code, out, err = _cli(capsys, "--input", shards, "--out", tmp_path / "out2")
    assert code == 2 and f"{shards / 'train-00002-of-00003.parquet'}: row 2: bad_label" in _one_error_line(err)
    (tmp_path / "nothing").mkdir()
    code, out, err = _cli(capsys, "--input", tmp_path / "nothing", "--out", tmp_path / "out3")
    assert code == 2 and "a directory without data files" in _one_error_line(err)
