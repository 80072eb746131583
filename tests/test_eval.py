"""Evaluation: loaders on the real benchmark files, the published metrics, voting, position swap, outputs."""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from r1reward_verl.eval.loaders import detect_benchmark, load_benchmark, sample_frames
from r1reward_verl.eval.metrics import compute_metrics, majority_vote
from tests.servers import running_server

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
    from r1reward_verl.eval.fixtures import make_media

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
    from r1reward_verl.eval.fixtures import write_fixture_files

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


def test_end_to_end_with_the_tiny_model_on_every_format(tiny_model_dir, tmp_path):
    from r1reward_verl.eval.fixtures import write_fixture_files

    files = write_fixture_files(tmp_path / "fx")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "r1reward_verl.eval", "run", "--model", tiny_model_dir, "--backend", "transformers",
           "--k", "3", "--swap", "--max-new-tokens", "8", "--max-frames", "4", "--no-progress", "--out", str(out),
           "--bench", f"vl_rewardbench={files['vl_rewardbench_parquet']}",
           "--bench", f"multimodal_rewardbench={files['multimodal_rewardbench']}",
           "--bench", str(files["mm_rlhf_rewardbench"])]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    items = [json.loads(x) for x in (out / "items.jsonl").read_text().splitlines()]
    assert Counter(r["benchmark"] for r in items) == {"vl_rewardbench": 2, "multimodal_rewardbench": 5, "mm_rlhf_rewardbench": 5}
    for r in items:
        assert len(r["preds"]) == 4 and len(r["outputs"]) == 4 and r["greedy"] is True  # greedy + 3 samples
        assert all(p in (1, 2, None) for p in r["preds"]) and r["swapped"]["label"] == 3 - r["label"]
    assert [r["video_frames"] for r in items if r["category"] == "video"] == [4, 4]  # frames reached the model
    metrics = json.loads((out / "metrics.json").read_text())
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


def test_shared_prefix_sampling_matches_plain_generate(tiny_model_dir):
    """One prefill for n samples gives the same next-token scores as running each sequence whole."""
    import torch

    from r1reward_verl.eval.backends import TransformersBackend
    from r1reward_verl.eval.fixtures import _png
    from r1reward_verl.eval.loaders import EvalPair
    from r1reward_verl.eval.runner import build_request

    be = TransformersBackend(tiny_model_dir, max_new_tokens=5)
    pair = EvalPair("vl_rewardbench", "a", "k", "general", "a", "What?", "Yes.", "No.", [_png("x")])
    enc = be.encode(build_request(pair, True, greedy=True, n=3))
    with torch.no_grad():
        ref = be.model.generate(**enc, do_sample=False, max_new_tokens=5, output_scores=True, return_dict_in_generate=True)
        shared = be.sample_shared(enc, 3, do_sample=False, output_scores=True, return_dict_in_generate=True)
    length = enc["input_ids"].shape[1]
    assert torch.equal(shared.sequences[:, length:], ref.sequences[:, length:].expand(3, -1))
    for a, b in zip(ref.scores, shared.scores):
        torch.testing.assert_close(b, a.expand_as(b), rtol=1e-4, atol=1e-4)


def test_batched_generation_matches_one_prompt_at_a_time(tiny_model_dir):
    """``batch_size`` > 1 left-pads prompts of different lengths into one batch: the same greedy outputs as one
    prompt at a time, k samples per request, the prompt tokens counted per sequence; a chunk that mixes
    request kinds goes one by one."""
    import torch

    from r1reward_verl.eval.backends import TransformersBackend
    from r1reward_verl.eval.fixtures import _png
    from r1reward_verl.eval.loaders import EvalPair
    from r1reward_verl.eval.runner import build_request

    pairs = [EvalPair("vl_rewardbench", str(i), "k", "general", "a", "What colour? " * (1 + 3 * i), "Red." * (i + 1),
                      "Blue, not red.", [_png(str(i))]) for i in range(5)]  # fmt: skip
    requests = [build_request(p, i % 2 == 0, greedy=True, n=2) for i, p in enumerate(pairs)]
    one = TransformersBackend(tiny_model_dir, max_new_tokens=6, min_new_tokens=6).run(requests, progress=False)
    batched_be = TransformersBackend(tiny_model_dir, max_new_tokens=6, min_new_tokens=6, batch_size=3)
    batched = batched_be.run(requests, progress=False)
    assert len({len(batched_be.encode(r)["input_ids"][0]) for r in requests}) == 5  # padding really happens
    assert [r.greedy for r in batched] == [r.greedy for r in one]
    # the random model writes the same greedy text for every prompt, so compare what it computes: every
    # generated position's scores of the padded batch against the prompt run alone
    with torch.no_grad():
        kw = dict(do_sample=False, max_new_tokens=4, output_scores=True, return_dict_in_generate=True)
        whole = batched_be.model.generate(**batched_be.encode_batch(requests), **kw)
        for j, req in enumerate(requests):
            alone = batched_be.model.generate(**batched_be.encode(req), **kw)
            for a, b in zip(alone.scores, whole.scores):
                torch.testing.assert_close(b[j], a[0], rtol=1e-4, atol=1e-4)
    assert all(len(r.samples) == 2 and all(isinstance(x, str) for x in r.samples) for r in batched)
    for req, res in zip(requests, batched):
        assert res.prompt_tokens == 3 * batched_be.encode(req)["input_ids"].shape[1]  # greedy + 2 samples
    mixed = [requests[0], build_request(pairs[1], False, greedy=True, n=0), requests[2]]
    out = batched_be.run(mixed, progress=False)
    assert [r.greedy for r in out] == [one[0].greedy, one[1].greedy, one[2].greedy] and out[1].samples == []
    with pytest.raises(ValueError, match="batch_size"):
        TransformersBackend(tiny_model_dir, batch_size=0)


def test_openai_backend_against_a_position_biased_judge(tmp_path):
    """A live OpenAI-compatible server that always prefers the first response (greedy) and votes 1,1,2:
    every number of the evaluation follows from the labels alone."""
    from r1reward_verl.eval.backends import OpenAIBackend
    from r1reward_verl.eval.fixtures import make_media
    from r1reward_verl.eval.runner import evaluate

    make_media(MMRLHF, tmp_path, frames=3)
    with running_server("scripted", "--behaviour", "first") as addr:
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

    from r1reward_verl.eval.fixtures import write_fixture_files

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
    from r1reward_verl.eval.fixtures import make_media
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

    with running_server("scripted", "--behaviour", "first") as addr:
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

    from preprocess.pairs import convert
    from r1reward_verl.eval.fixtures import _png
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
