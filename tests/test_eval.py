"""Evaluation: loaders on the real benchmark files, the published metrics, voting, position swap, outputs."""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from r1reward_verl.eval.loaders import detect_benchmark, item_key, load_benchmark, sample_frames
from r1reward_verl.eval.metrics import compute_metrics, majority_vote
from tests.support.servers import running_server

BENCH = Path(__file__).parent / "data" / "benchmarks"
VL, MMRLHF = BENCH / "vl_rewardbench.jsonl.gz", BENCH / "mm_rlhf_rewardbench.jsonl.gz"


# ---------------------------------------------------------------- loaders on the real files


def test_vl_rewardbench_counts_and_case_insensitive_categories():
    loaded = load_benchmark("vl_rewardbench", VL, load_media=False)
    assert loaded.read == 1250 and len(loaded.pairs) == 1250 and not loaded.rejected
    assert Counter(p.category for p in loaded.pairs) == {"general": 183, "hallucination": 749, "reasoning": 318}
    assert len({p.id for p in loaded.pairs}) == 1225  # ids repeat; items are keyed on id + texts
    assert len({p.key for p in loaded.pairs}) == 1250
    by_id = {p.id: p for p in loaded.pairs}
    assert by_id["RLAIF-V-14"].category == "hallucination"  # mixed case, as in the file
    assert loaded.summary()["sha256"] and detect_benchmark(VL) == "vl_rewardbench"


def test_mm_rlhf_rewardbench_counts_groups_and_videos():
    loaded = load_benchmark("mm_rlhf_rewardbench", MMRLHF, load_media=False)
    cats = Counter(p.category for p in loaded.pairs)
    assert cats == {"mcq": 42, "long": 37, "short": 34, "safety": 32, "video": 25}
    assert len({p.group for p in loaded.pairs}) == 46
    groups = {c: len({p.group for p in loaded.pairs if p.category == c}) for c in cats}
    assert groups == {"mcq": 10, "long": 10, "short": 10, "safety": 6, "video": 10}
    assert detect_benchmark(MMRLHF) == "mm_rlhf_rewardbench"


def test_real_file_with_drawn_media_loads_video_frames(tmp_path):
    from tests.support.media import make_media

    make_media(MMRLHF, tmp_path, frames=40)
    loaded = load_benchmark("mm_rlhf_rewardbench", MMRLHF, tmp_path, max_frames=32)
    videos = [p for p in loaded.pairs if p.category == "video"]
    assert len(videos) == 25 and all(len(p.video) == 32 for p in videos)  # every video reaches the model
    assert all(Path(p.images[0]).exists() for p in loaded.pairs if p.category != "video")


def test_frames_are_evenly_spaced_over_sorted_names(tmp_path):
    for i in range(10):
        Image.new("RGB", (4, 4)).save(tmp_path / f"f{i:02d}.jpg")
    names = [Path(p).name for p in sample_frames(tmp_path, 4)]
    assert names == ["f00.jpg", "f03.jpg", "f06.jpg", "f09.jpg"]
    assert len(sample_frames(tmp_path, 32)) == 10


def test_bad_rows_stop_with_file_and_row_or_are_counted(tmp_path):
    f = tmp_path / "mm.jsonl"
    rows = [{"id": "a", "image": "mcq/1.png", "prompt": "q", "chosen": "x", "rejected": "y"},
            {"id": "b", "image": "mcq/missing.png", "prompt": "q", "chosen": "x", "rejected": "y"},
            {"id": "c", "image": "elsewhere/2.png", "prompt": "q", "chosen": "x", "rejected": "y"},
            {"id": "d", "image": "mcq/1.png", "prompt": "q", "chosen": "", "rejected": "y"},
            {"id": "a", "image": "mcq/1.png", "prompt": "q", "chosen": "x", "rejected": "y"}]  # fmt: skip
    f.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{not json\n")
    (tmp_path / "mcq").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "mcq" / "1.png")
    (tmp_path / "elsewhere").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "elsewhere" / "2.png")
    with pytest.raises(ValueError, match=r"mm.jsonl: row 2: missing_media"):
        load_benchmark("mm_rlhf_rewardbench", f)
    loaded = load_benchmark("mm_rlhf_rewardbench", f, skip_invalid=True)
    assert [p.id for p in loaded.pairs] == ["a"]
    assert loaded.rejected == {"missing_media": 1, "unknown_category": 1, "empty_field": 1, "duplicate": 1, "bad_json": 1}
    assert loaded.read == 6 == len(loaded.pairs) + sum(loaded.rejected.values())


def test_every_published_format_loads(tmp_path):
    from tests.support.media import write_fixture_files

    files = write_fixture_files(tmp_path)
    vl = load_benchmark("vl_rewardbench", files["vl_rewardbench_jsonl"])
    assert [p.category for p in vl.pairs] == ["hallucination", "hallucination", "reasoning", "general"]
    hf = load_benchmark(detect_benchmark(files["vl_rewardbench_parquet"]), files["vl_rewardbench_parquet"])
    # human_ranking [1, 0]: the second response is preferred
    assert hf.pairs[0].chosen == "A, because ..." and hf.pairs[1].chosen == "A small square."
    assert hf.pairs[0].category == "reasoning" and isinstance(hf.pairs[0].images[0], bytes)
    mmrb = load_benchmark(detect_benchmark(files["multimodal_rewardbench"]), files["multimodal_rewardbench"])
    assert [p.category for p in mmrb.pairs] == ["math", "coding", "bias", "vqa", "correctness"]
    assert mmrb.pairs[1].chosen == "Use i+1."  # Better: Output2
    mm = load_benchmark("mm_rlhf_rewardbench", files["mm_rlhf_rewardbench"])
    assert [len(p.video or []) for p in mm.pairs] == [0, 0, 0, 32, 32]


# ---------------------------------------------------------------- metrics on hand-made predictions


def rec(bench, cat, label, preds, group=None, greedy=True, swapped=None, i=[0]):
    i[0] += 1
    r = {"benchmark": bench, "id": f"x{i[0]}", "category": cat, "group": group or f"g{i[0]}", "label": label,
         "preds": preds, "greedy": greedy}  # fmt: skip
    if swapped:
        r["swapped"] = {"label": 3 - label, "preds": swapped}
    return r


def test_vl_rewardbench_overall_is_micro_and_macro_is_the_mean_of_categories():
    recs = ([rec("vl_rewardbench", "hallucination", 1, [1])] * 8 + [rec("vl_rewardbench", "hallucination", 1, [2])] * 2
            + [rec("vl_rewardbench", "reasoning", 2, [2])] + [rec("vl_rewardbench", "reasoning", 2, [None])]
            + [rec("vl_rewardbench", "general", 1, [2])] * 2)  # fmt: skip
    m = compute_metrics(recs)["vl_rewardbench"]
    assert (m["hallucination"], m["reasoning"], m["general"]) == (80.0, 50.0, 0.0)
    assert m["overall_acc"] == pytest.approx(100 * 9 / 14, abs=1e-3)  # micro
    assert m["macro_acc"] == pytest.approx((80 + 50 + 0) / 3, abs=1e-3)
    assert m["unparsable"] == 1 and m["mode"] == "greedy" and m["n"] == 14
    official = m["official_excluding_unparsable"]  # the official scorer drops the unparsable item
    assert official["n"] == 13 and official["reasoning"] == 100.0
    assert official["overall_acc"] == pytest.approx(100 * 9 / 13, abs=1e-3)


def test_mm_rlhf_acc_plus_counts_a_group_only_if_all_its_pairs_are_right():
    b = "mm_rlhf_rewardbench"
    recs = [rec(b, "mcq", 1, [1], "A"), rec(b, "mcq", 2, [2], "A"),  # group A: all right
            rec(b, "mcq", 1, [1], "B"), rec(b, "mcq", 1, [None], "B"),  # group B: one unparsable
            rec(b, "video", 2, [2], "C"), rec(b, "video", 1, [2], "D")]  # fmt: skip
    m = compute_metrics(recs)[b]
    assert m["acc"] == pytest.approx(100 * 4 / 6, abs=1e-3)
    assert m["acc_plus"] == 50.0  # A and C of A, B, C, D
    assert m["acc_plus_by_category"] == {"mcq": 50.0, "video": 50.0}
    assert m["mcq"] == 75.0 and m["video"] == 50.0


def test_multimodal_rewardbench_per_category_and_overall():
    b = "multimodal_rewardbench"
    recs = [rec(b, "math", 1, [1]), rec(b, "math", 1, [2]), rec(b, "coding", 2, [2]), rec(b, "vqa", 1, [1])]
    m = compute_metrics(recs)[b]
    assert m == {**m, "overall": 75.0, "math": 50.0, "coding": 100.0, "vqa": 100.0}
    assert "toxicity" not in m  # absent categories are not invented


def test_voting_and_any_at_k_from_one_sampling_pass():
    assert majority_vote([1, 2, 1]) == 1 and majority_vote([1, 2]) is None and majority_vote([None, None]) is None
    assert majority_vote([2, None, None]) == 2
    b = "vl_rewardbench"
    recs = [rec(b, "general", 1, [1, 2, 1, 1]),  # greedy right; samples 2, 1, 1
            rec(b, "general", 2, [1, 1, 2, 2]),  # greedy wrong; samples 1, 2, 2
            rec(b, "general", 1, [1, None, None, 2])]  # fmt: skip
    m = compute_metrics(recs, ks=[1, 2, 3])[b]
    assert m["overall_acc"] == pytest.approx(200 / 3, abs=1e-3)
    assert m["voting"]["1"]["overall_acc"] == 0.0  # first samples: 2, 1, None
    assert m["voting"]["2"]["overall_acc"] == 0.0  # ties (2,1 and 1,2) and no parsed vote count as wrong
    assert m["voting"]["3"]["overall_acc"] == pytest.approx(100 * 2 / 3, abs=1e-3)  # 1; 2; 2(wrong)
    assert m["any"]["1"]["overall_acc"] == 0.0 and m["any"]["2"]["overall_acc"] == pytest.approx(100 * 2 / 3, abs=1e-3)
    assert m["any"]["3"]["overall_acc"] == pytest.approx(100 * 2 / 3, abs=1e-3)


def test_position_swap_metrics():
    b = "vl_rewardbench"
    recs = [rec(b, "general", 1, [1], swapped=[2]),  # right in both orders
            rec(b, "general", 2, [1], swapped=[1]),  # always "1": wrong, then right; orders disagree
            rec(b, "general", 1, [1], swapped=[1])]  # always "1": right, then wrong
    swap = compute_metrics(recs)[b]["position_swap"]
    assert swap["original"]["overall_acc"] == pytest.approx(200 / 3, abs=1e-3)
    assert swap["swapped"]["overall_acc"] == pytest.approx(200 / 3, abs=1e-3)
    assert swap["agreement"] == pytest.approx(100 / 3, abs=1e-3)
    assert swap["debiased"]["overall_acc"] == pytest.approx(100 / 3, abs=1e-3)


# ---------------------------------------------------------------- end to end


def _valid_png(path: Path) -> bool:
    with open(path, "rb") as f:
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            return False
    with Image.open(path) as im:
        im.verify()
    return True


# the weight-built judge of tests/support/judges.py: shown two one-word responses it prefers the higher-scored
# word, wherever it stands; the fixture's responses become these words, so the right answer of every pair in
# either order is known in advance, and sometimes the human-preferred response is the judge's loser
SCORES = {"dog": 0.2, "chart": 0.1, "red": -0.1, "cat": -0.2}
PAIRS = {  # (benchmark, id) in file order -> (preferred, other)
    ("vl_rewardbench", "mmmu_pro_1"): ("dog", "cat"), ("vl_rewardbench", "vlfeedback_9"): ("red", "chart"),
    ("multimodal_rewardbench", "math_001"): ("chart", "cat"), ("multimodal_rewardbench", "code_002"): ("cat", "dog"),
    ("multimodal_rewardbench", "pairs_003"): ("dog", "red"), ("multimodal_rewardbench", "vqa_004"): ("red", "cat"),
    ("multimodal_rewardbench", "cor_005"): ("red", "dog"),
    ("mm_rlhf_rewardbench", "g1"): [("dog", "cat"), ("dog", "red")], ("mm_rlhf_rewardbench", "g2"): ("cat", "chart"),
    ("mm_rlhf_rewardbench", "g3"): [("chart", "red"), ("chart", "cat")],
}  # fmt: skip


def _scored_fixture(directory: Path) -> dict[str, Path]:
    """write_fixture_files, each pair's responses replaced by the words of PAIRS (labels and media unchanged)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.support.media import write_fixture_files

    files = write_fixture_files(directory)
    words = {k: list(v) if isinstance(v, list) else [v] for k, v in PAIRS.items()}
    rows = pq.read_table(files["vl_rewardbench_parquet"]).to_pylist()
    for r in rows:
        good, bad = words[("vl_rewardbench", r["id"])].pop(0)
        r["response"] = [good, bad] if r["human_ranking"] == [0, 1] else [bad, good]
    pq.write_table(pa.Table.from_pylist(rows), files["vl_rewardbench_parquet"])
    rows = json.loads(files["multimodal_rewardbench"].read_text())
    for r in rows:
        good, bad = words[("multimodal_rewardbench", r["ID"])].pop(0)
        r["Output1"], r["Output2"] = (good, bad) if r["Better"] == "Output1" else (bad, good)
    files["multimodal_rewardbench"].write_text(json.dumps(rows))
    rows = [json.loads(x) for x in files["mm_rlhf_rewardbench"].read_text().splitlines()]
    for r in rows:
        r["chosen"], r["rejected"] = words[("mm_rlhf_rewardbench", r["id"])].pop(0)
    files["mm_rlhf_rewardbench"].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return files


def test_end_to_end_with_the_tiny_model_on_every_format(tmp_path):
    """The CLI with the transformers backend on every published format, the model a judge made of weights that
    prefers the higher-scored word: every output, in each order, and every number of metrics.json are known
    from the fixture alone. A dropped or reordered row, an output given to the other order, a label not flipped
    for the swapped order, tags lost in decoding or a metric that is not what the items say fail."""
    from tests.support.judges import build_scoring_judge_model

    files = _scored_fixture(tmp_path / "fx")
    judge = build_scoring_judge_model(tmp_path / "judge", SCORES)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "r1reward_verl.eval", "run", "--model", str(judge), "--backend", "transformers",
           "--k", "3", "--swap", "--max-new-tokens", "12", "--max-frames", "4", "--no-progress", "--out", str(out),
           "--bench", f"vl_rewardbench={files['vl_rewardbench_parquet']}",
           "--bench", f"multimodal_rewardbench={files['multimodal_rewardbench']}",
           "--bench", str(files["mm_rlhf_rewardbench"])]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    items = [json.loads(x) for x in (out / "items.jsonl").read_text().splitlines()]
    # every row of every file, in file order
    rows = [(k, w) for k, v in PAIRS.items() for w in (v if isinstance(v, list) else [v])]
    assert [(r["benchmark"], r["id"]) for r in items] == [k for k, _ in rows]
    right = {}  # does the judge pick the human-preferred response (in both orders: it ignores the order)
    for r, ((bench, _), (good, bad)) in zip(items, rows):
        if bench == "mm_rlhf_rewardbench":  # g1 and g3 have two rows each: this is the row of these words
            assert r["key"] == item_key(r["id"], {"g1": "Pick A or B.", "g2": "Explain.", "g3": "What happens?"}[r["id"]], good, bad)
        right[r["key"]] = SCORES[good] > SCORES[bad]
        assert r["greedy"] is True and r["swapped"]["label"] == 3 - r["label"]
        for side in (r, r["swapped"]):  # greedy + 3 samples in each order: the judge's pick, where it was shown
            pick = side["label"] if right[r["key"]] else 3 - side["label"]
            assert side["outputs"] == [f"<think>o</think><answer>{pick}</answer>"] * 4 and side["preds"] == [pick] * 4
    assert {r["label"] for r in items} == {1, 2}  # the seeded order puts either response first
    assert [r["video_frames"] for r in items if r["category"] == "video"] == [4, 4]  # frames reached the model
    metrics = json.loads((out / "metrics.json").read_text())

    def acc(recs):  # % of pairs the judge gets right
        return pytest.approx(100 * sum(right[r["key"]] for r in recs) / len(recs), abs=1e-3)

    headline = {"vl_rewardbench": "overall_acc", "multimodal_rewardbench": "overall", "mm_rlhf_rewardbench": "acc"}
    for bench, key in headline.items():
        recs, m = [r for r in items if r["benchmark"] == bench], metrics[bench]
        assert m["n"] == len(recs) and m["failed"] == 0 and m["unparsable"] == 0 and 0 < m[key] < 100
        assert m[key] == acc(recs)
        for cat in {r["category"] for r in recs}:
            assert m[cat] == acc([r for r in recs if r["category"] == cat])
        for k in ("1", "2", "3"):
            assert m["voting"][k][key] == m["any"][k][key] == acc(recs)
        swap = m["position_swap"]  # the judge picks the same response in both orders
        assert swap["swapped"][key] == swap["debiased"][key] == acc(recs) and swap["agreement"] == 100.0
    assert metrics["mm_rlhf_rewardbench"]["acc_plus"] == pytest.approx(200 / 3, abs=1e-3)  # g1, g3 right; g2 wrong
    vl = metrics["vl_rewardbench"]
    assert (vl["reasoning"], vl["general"], vl["macro_acc"]) == (100.0, 0.0, 50.0)  # mmmu right, vlfeedback wrong
    assert set(metrics["vl_rewardbench"]) >= {"overall_acc", "macro_acc", "voting", "any", "position_swap"}
    assert set(metrics["mm_rlhf_rewardbench"]) >= {"acc", "acc_plus", "mcq", "video"}
    assert set(metrics["multimodal_rewardbench"]) >= {"overall", "math", "coding", "bias", "vqa", "correctness"}
    assert set(metrics["mm_rlhf_rewardbench"]["voting"]) == {"1", "2", "3"}
    assert metrics["_run"]["prompt_tokens_processed"] > 0 and metrics["_run"]["inputs"]["mm_rlhf_rewardbench"]["video_pairs"] == 2
    assert "| Mcq | Long | Short | Safety | Video | Acc | Acc+ |" in (out / "table.md").read_text()
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["accuracy_vs_k.png", "accuracy_vs_k_mm_rlhf_rewardbench.png",
                    "accuracy_vs_k_multimodal_rewardbench.png", "accuracy_vs_k_vl_rewardbench.png"]  # fmt: skip
    assert all(_valid_png(out / p) for p in pngs)
    # `score` recomputes the same metrics from items.jsonl alone
    res = subprocess.run([sys.executable, "-m", "r1reward_verl.eval", "score", "--items", str(out / "items.jsonl"),
                          "--out", str(tmp_path / "rescored")], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    rescored = json.loads((tmp_path / "rescored" / "metrics.json").read_text())
    assert json.dumps({k: v for k, v in metrics.items() if k != "_run"}, sort_keys=True) == json.dumps(rescored, sort_keys=True)
    assert all(_valid_png(p) for p in (tmp_path / "rescored").glob("*.png"))


def test_openai_backend_against_a_position_biased_judge(tmp_path):
    """A live OpenAI-compatible server that always prefers the first response (greedy) and votes 1,1,2:
    every number of the evaluation follows from the labels alone."""
    from r1reward_verl.eval.backends import OpenAIBackend
    from tests.support.media import make_media
    from r1reward_verl.eval.runner import evaluate

    make_media(MMRLHF, tmp_path, frames=3)
    with running_server("scripted", "--behaviour", "position_biased") as addr:
        backend = OpenAIBackend(f"http://{addr}/v1", "judge", concurrency=8, timeout=30)
        doc = evaluate({"mm_rlhf_rewardbench": str(MMRLHF)}, backend, tmp_path / "out", k=5, swap=True,
                       media_roots={"mm_rlhf_rewardbench": str(tmp_path)}, max_frames=3, progress=False)  # fmt: skip
    items = [json.loads(x) for x in (tmp_path / "out" / "items.jsonl").read_text().splitlines()]
    assert len(items) == 170 and backend.failed_requests == 0
    first = 100 * sum(r["label"] == 1 for r in items) / 170
    assert 30 < first < 70  # the seeded order puts the preferred response first about half the time
    m = doc["mm_rlhf_rewardbench"]
    assert m["acc"] == pytest.approx(first, abs=1e-3)
    assert m["voting"]["5"]["acc"] == pytest.approx(first, abs=1e-3)  # 1,1,2,1,1 -> "1"
    assert m["any"]["1"]["acc"] == pytest.approx(first, abs=1e-3) and m["any"]["3"]["acc"] == 100.0
    swap = m["position_swap"]
    assert swap["swapped"]["acc"] == pytest.approx(100 - first, abs=1e-3)
    assert swap["agreement"] == 0.0 and swap["debiased"]["acc"] == 0.0 and swap["debiased"]["acc_plus"] == 0.0
    assert doc["_run"]["prompt_tokens_processed"] > 0


def test_eval_example_script_runs_on_a_benchmark_folder(tiny_model_dir, tmp_path):
    import os

    from tests.support.media import write_fixture_files

    write_fixture_files(tmp_path / "bench")
    env = {**os.environ, "PYTHON": sys.executable, "R1R_EVAL_MODEL": tiny_model_dir, "R1R_BENCH_DIR": str(tmp_path / "bench"),
           "EVAL_BACKEND": "transformers", "EVAL_K": "2", "EVAL_OUT": str(tmp_path / "out")}  # fmt: skip
    script = Path(__file__).parent.parent / "examples" / "run_eval.sh"
    res = subprocess.run(["bash", str(script), "--max-new-tokens", "4", "--max-frames", "2", "--no-progress"],
                         capture_output=True, text=True, timeout=600, env=env)  # fmt: skip
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(metrics) == {"vl_rewardbench", "multimodal_rewardbench", "mm_rlhf_rewardbench", "_run"}
    # the jsonl form of VL-RewardBench is taken, not also the parquet
    assert metrics["_run"]["inputs"]["vl_rewardbench"]["file"].endswith("vl_rewardbench.jsonl")
    assert metrics["vl_rewardbench"]["n"] == 4 and "position_swap" in metrics["vl_rewardbench"]


def test_a_crashed_evaluation_resumes_after_its_last_finished_chunk(tmp_path):
    """Chunks of 50 pairs are saved as they finish; after a crash in the third chunk a rerun asks the
    server only for the remaining pairs and ends with the same items as an uninterrupted run."""
    import urllib.request

    from r1reward_verl.eval.backends import OpenAIBackend
    from tests.support.media import make_media
    from r1reward_verl.eval.runner import evaluate

    make_media(MMRLHF, tmp_path, frames=2)
    kw = dict(k=3, swap=True, media_roots={"mm_rlhf_rewardbench": str(tmp_path)}, max_frames=2, progress=False,
              chunk_pairs=50)  # fmt: skip
    bench = {"mm_rlhf_rewardbench": str(MMRLHF)}

    class CrashOnThirdChunk(OpenAIBackend):
        calls = 0

        def run(self, requests, progress=True):
            self.calls += 1
            if self.calls == 3:
                raise KeyboardInterrupt("simulated crash")
            return super().run(requests, progress)

    def requests_made(addr):
        with urllib.request.urlopen(f"http://{addr}/stats") as r:
            return json.loads(r.read())["requests"]

    with running_server("scripted", "--behaviour", "position_biased") as addr:
        url = f"http://{addr}/v1"
        with pytest.raises(KeyboardInterrupt):
            evaluate(bench, CrashOnThirdChunk(url, "judge"), tmp_path / "run", **kw)
        assert len((tmp_path / "run" / "items.partial.jsonl").read_text().splitlines()) == 100
        before = requests_made(addr)
        evaluate(bench, OpenAIBackend(url, "judge"), tmp_path / "run", **kw)
        assert requests_made(addr) - before == 70 * 4  # greedy + samples, both orders, for 70 pairs only
        with pytest.raises(ValueError, match="different run"):
            evaluate(bench, OpenAIBackend(url, "judge"), tmp_path / "run", **{**kw, "k": 5})
        evaluate(bench, OpenAIBackend(url, "judge"), tmp_path / "fresh", **kw)
    resumed = (tmp_path / "run" / "items.jsonl").read_text()
    assert resumed == (tmp_path / "fresh" / "items.jsonl").read_text() and len(resumed.splitlines()) == 170


def test_eval_prompt_is_the_training_prompt_verl_builds(tmp_path, tiny_model_dir):
    """A pair evaluated and the same pair trained on (preprocess -> verl's RLHFDataset) give the model
    the same chat messages."""
    from omegaconf import OmegaConf
    from verl.utils import hf_processor, hf_tokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset

    from r1reward_verl.data.pairs import convert
    from tests.support.media import _png
    from r1reward_verl.eval.loaders import EvalPair
    from r1reward_verl.eval.runner import build_request

    (tmp_path / "a.png").write_bytes(_png("a"))
    rec = {"id": "p", "question": "Which is right?", "images": ["a.png"], "response_1": "It is a cat.",
           "response_2": "It is a dog.", "preferred": 1}  # fmt: skip
    (tmp_path / "in.jsonl").write_text(json.dumps(rec) + "\n")
    convert([str(tmp_path / "in.jsonl")], tmp_path / "out", val_fraction=0.0, progress=False)
    item = RLHFDataset(str(tmp_path / "out" / "train.parquet"), hf_tokenizer(tiny_model_dir),
                       OmegaConf.create({"max_prompt_length": 4096, "filter_overlong_prompts_workers": None, "cache_dir": str(tmp_path / "c")}),
                       hf_processor(tiny_model_dir))[0]  # fmt: skip
    swapped = item["extra_info"]["swapped"]
    pair = EvalPair("vl_rewardbench", "p", "k", "general", "p", rec["question"], rec["response_1"], rec["response_2"],
                    [str(tmp_path / "a.png")])  # fmt: skip
    req = build_request(pair, first_is_chosen=not swapped, greedy=True, n=0)
    # the dataset's image items also carry the image itself (bytes, PIL); the backend passes images apart
    train = [{"role": m["role"], "content": [{k: v for k, v in c.items() if k in ("type", "text")} for c in m["content"]]}
             for m in item["raw_prompt"]]  # fmt: skip
    assert req.messages == train
    proc = hf_processor(tiny_model_dir)
    assert proc.apply_chat_template(req.messages, add_generation_prompt=True, tokenize=False) == \
        proc.apply_chat_template(item["raw_prompt"], add_generation_prompt=True, tokenize=False)


def test_inspect_cli_reports_what_the_loaders_read():
    res = subprocess.run([sys.executable, "-m", "r1reward_verl.eval", "inspect", "--bench", str(MMRLHF)],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert info["benchmark"] == "mm_rlhf_rewardbench" and info["read"] == info["loaded"] == 170
    assert info["groups"] == 46 and info["groups_by_category"]["safety"] == 6
