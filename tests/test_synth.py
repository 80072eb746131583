"""The synthetic colour-preference task (r1reward_verl/demo/synth.py): through preprocess.pairs, the eval loaders,
the tokenizer; verdicts agree with labels; images show the named colour; byte-identical reruns."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from r1reward_verl.demo import scoring, synth
from r1reward_verl.data.pairs import main as pairs_main
from r1reward_verl.eval.loaders import detect_benchmark, load_benchmark

N_TRAIN, N_HELDOUT, SEED = 40, 24, 7


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "data"
    assert synth.main(["--out", str(out), "--n-train", str(N_TRAIN), "--n-heldout", str(N_HELDOUT),
                       "--seed", str(SEED)]) == 0  # fmt: skip
    return out


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_difficulty_definition():
    hard = [math.dist(synth.PALETTE[a], synth.PALETTE[b]) for a, b in synth.HARD_PAIRS]
    easy = [math.dist(synth.PALETTE[a], synth.PALETTE[b]) for a, b in synth.EASY_PAIRS]
    assert max(hard) < min(easy)  # confusable = strictly closer in RGB than any easy pair
    assert max(hard) + 2 * math.sqrt(3) * synth.JITTER < min(easy)  # even after jitter
    assert 2 * math.sqrt(3) * synth.JITTER < min(hard)  # jitter never makes two hard colours meet
    for colour in synth.PALETTE:  # every colour is seen in easy (SFT) and hard (RL) pairs
        assert any(colour in p for p in synth.HARD_PAIRS) and any(colour in p for p in synth.EASY_PAIRS)
    for a, b in synth.HARD_PAIRS:
        assert synth.difficulty_of(a, b) == synth.difficulty_of(b, a) == "hard"
    assert {synth.difficulty_of(a, b) for a, b in synth.EASY_PAIRS} == {"easy"}


@pytest.mark.parametrize("n, frac", [(7, 0.3), (40, 0.5), (9, 0.0), (9, 1.0)])
def test_exact_hard_fraction_and_balanced_labels(n, frac):
    items = synth.generate(n, seed=1, stream="t", hard_frac=frac)
    by = Counter(it.difficulty for it in items)
    assert by["hard"] == round(n * frac) and by["easy"] == n - round(n * frac)
    for d in ("easy", "hard"):
        labels = Counter(it.preferred for it in items if it.difficulty == d)
        assert abs(labels[1] - labels[2]) <= 1
    assert all((it.attempts == 1) == (it.difficulty == "easy") for it in items)
    assert {it.attempts for it in items if it.difficulty == "hard"} <= {2, 3, "failed"}
    assert len({it.png for it in items}) == n


def test_cli_outputs(data):
    rows = _jsonl(data / "pairs.jsonl")
    assert len(rows) == N_TRAIN and len({r["id"] for r in rows}) == N_TRAIN
    summary = json.loads((data / "summary.json").read_text())
    assert summary["by_difficulty"] == {"easy": 20, "hard": 20}
    assert summary["labels_by_difficulty"] == {"easy": {"1": 10, "2": 10}, "hard": {"1": 10, "2": 10}}
    assert summary["reasoning_rows"] == 20
    for r in rows:
        assert set(r) >= {"id", "question", "images", "response_1", "response_2", "preferred", "source", "attempts"}
        assert r["images"] == [f"images/{r['id']}.png"] and (data / r["images"][0]).is_file()
        assert r["source"] == synth.SOURCE
        assert ("reasoning" in r) == (r["attempts"] == 1) == r["id"].startswith("train-easy-")
    h = json.loads((data / "heldout" / "summary.json").read_text())
    assert h["pairs"] == N_HELDOUT and h["by_difficulty"] == {"easy": 12, "hard": 12}
    assert {f["rows"] for f in h["files"].values()} == {N_HELDOUT}
    # an existing output is never silently mixed with a new one
    assert synth.main(["--out", str(data), "--n-train", "2", "--n-heldout", "2"]) == 2
    assert len(_jsonl(data / "pairs.jsonl")) == N_TRAIN


def _rl(d: Path) -> list[dict]:
    return pq.read_table(d / "train.parquet").to_pylist() + pq.read_table(d / "val.parquet").to_pylist()


def test_through_preprocess_pairs(data, tmp_path):
    inp = str(data / "pairs.jsonl")
    # everything: RL on all rows, SFT on the rows with a reasoning (the easy ones)
    assert pairs_main(["--input", inp, "--out", str(tmp_path / "rl"), "--sft-out", str(tmp_path / "sft"),
                       "--val-fraction", "0", "--no-progress"]) == 0  # fmt: skip
    rl = _rl(tmp_path / "rl")
    assert len(rl) == N_TRAIN
    assert Counter(r["reward_model"]["ground_truth"] for r in rl) == {"1": 20, "2": 20}
    assert Counter(r["extra_info"]["attempts"] for r in rl)["1"] == 20
    by_id = {r["id"]: r for r in _jsonl(data / "pairs.jsonl")}
    for r in rl:
        src = by_id[r["extra_info"]["id"]]
        assert r["images"][0]["bytes"] == (data / src["images"][0]).read_bytes()
        assert r["prompt"][0]["content"].startswith("<image>") and src["question"] in r["prompt"][0]["content"]
        swapped = r["extra_info"]["swapped"]
        assert r["reward_model"]["ground_truth"] == str(3 - src["preferred"] if swapped else src["preferred"])
    sft = pq.read_table(tmp_path / "sft" / "train.parquet").to_pylist()
    assert pq.read_table(tmp_path / "sft" / "val.parquet").num_rows == 0
    assert len(sft) == 20 and all(r["id"].startswith("train-easy-") for r in sft)
    assert Counter(r["label"] for r in sft) == {"1": 10, "2": 10}
    for r in sft:
        src = by_id[r["id"]]
        assert r["messages"][1]["content"] == f"<think>{src['reasoning']}</think><answer>{src['preferred']}</answer>"

    # the paper's RL subset: --difficulty-filter keeps exactly the hard rows (attempts >= 2 or failed)
    assert pairs_main(["--input", inp, "--out", str(tmp_path / "rl_hard"), "--sft-out", str(tmp_path / "sft_hard"),
                       "--difficulty-filter", "--val-fraction", "0", "--no-progress"]) == 0  # fmt: skip
    hard = _rl(tmp_path / "rl_hard")
    assert len(hard) == 20 and all(r["extra_info"]["id"].startswith("train-hard-") for r in hard)
    assert {r["extra_info"]["attempts"] for r in hard} <= {"2", "3", "failed"}
    assert Counter(r["reward_model"]["ground_truth"] for r in hard) == {"1": 10, "2": 10}
    s = json.loads((tmp_path / "rl_hard" / "summary.json").read_text())
    assert s["rejected_by_reason"] == {"difficulty_filtered": 20} and s["read"] == N_TRAIN
    # ... for the RL set only: the cold start still learns from every row with a reasoning (the easy ones here),
    # as in one call of examples/make_sft_data.sh
    sft_one_call = pq.read_table(tmp_path / "sft_hard" / "train.parquet").to_pylist()
    assert sorted(r["id"] for r in sft_one_call) == sorted(r["id"] for r in sft) and len(sft_one_call) == 20

    # with a validation split the counts still add up and nothing is a duplicate
    assert pairs_main(["--input", inp, "--out", str(tmp_path / "rl_val"), "--val-fraction", "0.25", "--no-progress"]) == 0
    s = json.loads((tmp_path / "rl_val" / "summary.json").read_text())
    assert s["written"] == N_TRAIN and s["rejected"] == 0 and s["written_by_split"].get("val", 0) > 0


def test_reasoning_on_all(tmp_path):
    synth.write_dataset(tmp_path / "d", 30, 4, seed=2, hard_frac=0.6, reasoning_on="all")
    rows = _jsonl(tmp_path / "d" / "pairs.jsonl")
    assert all(("reasoning" in r) == (r["attempts"] != "failed") for r in rows)
    with_r = sum("reasoning" in r for r in rows)  # every row with a reasoning, easy or hard (only RL is filtered)
    assert pairs_main(["--input", str(tmp_path / "d" / "pairs.jsonl"), "--out", str(tmp_path / "rl"), "--sft-out",
                       str(tmp_path / "sft"), "--difficulty-filter", "--val-fraction", "0", "--no-progress"]) == 0  # fmt: skip
    assert pq.read_table(tmp_path / "sft" / "train.parquet").num_rows == with_r > 0


def test_reasoning_verdict_agrees_with_label(data):
    rows = _jsonl(data / "pairs.jsonl") + _jsonl(data / "heldout" / "pairs.jsonl")
    checked = 0
    for r in rows:
        if "reasoning" not in r:
            continue
        m = synth.REASONING_RE.match(r["reasoning"])
        assert m, r["reasoning"]
        k = r["preferred"]
        assert m["better"] == str(k)
        assert m["match"] == str(k)
        assert m["colour"] == r["meta"]["colour"] == m[f"said_{k}"] and m["shape"] == r["meta"]["shape"]
        assert m[f"said_{3 - k}"] == r["meta"]["wrong"]
        # each response says the colour the reasoning attributes to it
        assert r["response_1"].endswith(f" {m['said_1']}.") and r["response_2"].endswith(f" {m['said_2']}.")
        checked += 1
    assert checked == 20 + 12


def test_heldout_through_eval_loaders(data):
    h = data / "heldout"
    meta = {r["id"]: r for r in _jsonl(h / "pairs.jsonl")}
    files = {"vl_rewardbench": h / "vl_rewardbench.jsonl", "multimodal_rewardbench": h / "all_data.json",
             "mm_rlhf_rewardbench": h / "mm_rlhf_rewardbench.jsonl"}  # fmt: skip
    expected_category = {"vl_rewardbench": "general", "multimodal_rewardbench": "vqa", "mm_rlhf_rewardbench": "short"}
    for bench, path in files.items():
        assert detect_benchmark(path) == bench
        loaded = load_benchmark(bench, path)  # the evaluator's call: media root = the file's folder, media checked
        assert loaded.read == len(loaded.pairs) == N_HELDOUT and not loaded.rejected
        assert Counter(p.id.split("-")[0] for p in loaded.pairs) == {"easy": 12, "hard": 12}
        assert {p.category for p in loaded.pairs} == {expected_category[bench]}
        assert len({p.group for p in loaded.pairs}) == N_HELDOUT  # MM-RLHF: one pair per Acc+ group
        for p in loaded.pairs:
            m = meta[p.id]["meta"]
            assert p.chosen.endswith(f" {m['colour']}.") and p.rejected.endswith(f" {m['wrong']}.")
            assert p.question == meta[p.id]["question"]
            assert synth.difficulty_of(m["colour"], m["wrong"]) == synth.difficulty_of_id(p.id) == m["difficulty"]
            assert Path(p.images[0]).read_bytes() == (h / meta[p.id]["images"][0]).read_bytes()
    mmrb = json.loads((h / "all_data.json").read_text())
    assert Counter(r["Better"] for r in mmrb) == {"Output1": 12, "Output2": 12}
    # disjoint from training: ids and images
    train = _jsonl(data / "pairs.jsonl")
    assert not {r["id"] for r in train} & set(meta)
    digest = lambda p: hashlib.sha256(p.read_bytes()).digest()  # noqa: E731
    assert not {digest(p) for p in (data / "images").iterdir()} & {digest(p) for p in (h / "images").iterdir()}


def test_accuracy_by_difficulty_from_items(data, tmp_path):
    from r1reward_verl.eval.metrics import compute_metrics
    from r1reward_verl.eval.runner import write_items

    records = []
    for bench, name in (("vl_rewardbench", "vl_rewardbench.jsonl"), ("mm_rlhf_rewardbench", "mm_rlhf_rewardbench.jsonl")):
        for i, p in enumerate(load_benchmark(bench, data / "heldout" / name).pairs):
            label = 1 + i % 2  # as the runner records: the label is the chosen one's position
            right = p.id.startswith("easy-")  # a model right on every easy pair, wrong on every hard one
            records.append({"benchmark": p.benchmark, "id": p.id, "key": p.key, "category": p.category,
                            "group": p.group, "label": label, "greedy": True,
                            "preds": [label if right else 3 - label],
                            "swapped": {"label": 3 - label, "preds": [3 - label]}})  # fmt: skip
    compute_metrics(records)  # valid records for the evaluator's own scorer
    acc = scoring.accuracy_by_difficulty(records)
    for bench in ("vl_rewardbench", "mm_rlhf_rewardbench"):
        assert acc[bench]["easy"] == {"n": 12, "acc": 100.0, "acc_both_orders": 100.0}
        assert acc[bench]["hard"] == {"n": 12, "acc": 0.0, "acc_both_orders": 0.0}
    write_items(records, tmp_path / "items.jsonl")
    assert scoring.main([str(tmp_path / "items.jsonl")]) == 0


def test_images_show_the_named_colour(data):
    from PIL import Image

    rows = _jsonl(data / "pairs.jsonl") + [dict(r, images=[f"heldout/{r['images'][0]}"])
                                           for r in _jsonl(data / "heldout" / "pairs.jsonl")]  # fmt: skip
    for r in rows:
        with Image.open(data / r["images"][0]) as im:
            im.load()
            assert im.size == (56, 56) and im.mode == "RGB"
            m = r["meta"]
            px = im.getpixel(tuple(m["probe"]))
            assert list(px) == m["fill"]
            assert min(synth.PALETTE, key=lambda c: math.dist(synth.PALETTE[c], px)) == m["colour"]
            assert max(abs(a - b) for a, b in zip(px, synth.PALETTE[m["colour"]])) <= synth.JITTER
            corner = im.getpixel((0, 0))
            assert corner[0] == corner[1] == corner[2] >= synth.BACKGROUND[0]  # grey background
    # the tiny model's image processor settings (r1reward_verl/tiny.py): 56x56 -> 4 image tokens
    from transformers import Qwen2VLImageProcessor

    proc = Qwen2VLImageProcessor(min_pixels=4 * 28 * 28, max_pixels=16 * 28 * 28, patch_size=14, merge_size=2,
                                 temporal_patch_size=2)  # fmt: skip
    with Image.open(data / rows[0]["images"][0]) as im:
        grid = proc(images=[im.convert("RGB")], return_tensors="pt")["image_grid_thw"][0].tolist()
    assert grid[0] * grid[1] * grid[2] // 4 == 4


def test_deterministic(data, tmp_path):
    args = ["--n-train", str(N_TRAIN), "--n-heldout", str(N_HELDOUT), "--seed", str(SEED)]
    assert synth.main(["--out", str(tmp_path / "again"), *args]) == 0
    assert _tree(tmp_path / "again") == _tree(data)  # same seed -> byte-identical files, wherever written
    synth.write_dataset(tmp_path / "other", N_TRAIN, N_HELDOUT, seed=SEED + 1)
    assert _tree(tmp_path / "other")["pairs.jsonl"] != _tree(data)["pairs.jsonl"]
    # the held-out benchmark depends on its own arguments only, not on the size of the training set
    synth.write_dataset(tmp_path / "bigger", 3 * N_TRAIN, N_HELDOUT, seed=SEED)
    bench = lambda d: {k: v for k, v in _tree(d / "heldout").items() if k != "summary.json"}  # noqa: E731
    assert bench(tmp_path / "bigger") == bench(data)
    # --force replaces every earlier output
    synth.write_dataset(tmp_path / "bigger", N_TRAIN, N_HELDOUT, seed=SEED, force=True)
    assert _tree(tmp_path / "bigger") == _tree(data)


def test_task_corpus_gives_whole_word_tokens():
    """The tiny model's tokenizer trained with the task's sentences (``tiny.task_corpus("synth")``)."""
    from r1reward_verl import tiny

    words = [" " + w for w in (*synth.PALETTE, *synth.SHAPES)]
    default = tiny._train_tokenizer()
    assert max(len(default.encode(w).ids) for w in words) >= 4  # "purple", "yellow", "triangle" in pieces
    tok = tiny._train_tokenizer(extra_corpus=tiny.task_corpus("synth"))
    assert all(len(tok.encode(w).ids) == 1 for w in words)
    example = synth.reasoning_text("orange", "circle", "red", "orange")
    assert len(tok.encode(example).ids) < 0.6 * len(default.encode(example).ids)
    assert set(synth.TASK_WORDS) >= {*synth.PALETTE, *synth.SHAPES, "Response", "responses", "better"}


def test_reasoning_steps_locate_the_error(data):
    """reasoning_steps on records as the runner writes them: the template's own reasoning scores 100 % in
    every step; a wrong colour seen, a misread response, a wrong copy and an unparsable output are each
    counted in their own step, in both orders."""
    meta = synth.read_meta(data / "heldout" / "pairs.jsonl")
    pairs = load_benchmark("vl_rewardbench", data / "heldout" / "vl_rewardbench.jsonl").pairs

    def out(colour, shape, s1, s2, match):
        return (f"<think>The image shows {synth._article(colour)} {colour} {shape}. The responses: {s1} 1, {s2} 2. "
                f"The image shows {colour} {match}. So Response {match} is better.</think><answer>{match}</answer>")

    def record(p, label, fault):
        m = meta[p.id]
        c, w, shape = m["colour"], m["wrong"], m["shape"]
        views = []
        for lab in (label, 3 - label):
            s = {lab: c, 3 - lab: w}
            seen, said, match = c, dict(s), lab
            if fault == "see":  # sees the wrong colour and copies its number
                seen, match = w, 3 - lab
            elif fault == "read":
                said[3 - lab] = c
            elif fault == "copy":
                match = 3 - lab
            text = "no reasoning" if fault == "unparsed" else out(seen, shape, said[1], said[2], match)
            views.append({"label": lab, "preds": [match], "outputs": [text]})
        return {"benchmark": "vl_rewardbench", "id": p.id, "label": label, "greedy": True, **views[0],
                "swapped": views[1]}  # fmt: skip

    perfect = scoring.reasoning_steps([record(p, 1 + i % 2, None) for i, p in enumerate(pairs)], meta)
    for d in ("easy", "hard"):
        assert perfect[d] == {"n": 24, "parsed": 100.0, "see": 100.0, "read": 100.0, "copy": 100.0}
    faults = ("see", "read", "copy", "unparsed")
    recs = [record(p, 1 + i % 2, faults[i % 4]) for i, p in enumerate(pairs)]
    got = scoring.reasoning_steps(recs, meta)
    n_by = Counter((meta[p.id]["difficulty"], faults[i % 4]) for i, p in enumerate(pairs))
    for d in ("easy", "hard"):
        parsed = 2 * sum(n_by[d, f] for f in faults[:3])
        assert got[d]["parsed"] == round(100 * parsed / (2 * 12), 1)
        for step in ("see", "read", "copy"):
            assert got[d][step] == round(100 * (parsed - 2 * n_by[d, step]) / parsed, 1), (d, step, got)
    with pytest.raises(KeyError, match="no meta for item"):
        scoring.reasoning_steps(recs, {})
