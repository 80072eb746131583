"""`python -m r1reward_verl.eval` on bad input and failing endpoints (issue 23): a user error is one line on
stderr naming the file, row or option, exit code 2; a failed request is never a result (exit code 1, not
saved as finished, asked again by a rerun); a failing run leaves earlier outputs as they were."""

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from r1reward_verl.eval.__main__ import main
from tests.support.media import _png, write_fixture_files
from r1reward_verl.eval.loaders import BadInput, load_benchmark
from tests.support.servers import closed_port, running_server

OUTPUTS = ("items.jsonl", "metrics.json", "table.md")


def cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "r1reward_verl.eval", *map(str, argv)], capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def in_process(capsys, *argv) -> tuple[int, list[str]]:
    """main() as the command line runs it (argparse's own exits included); (exit code, stderr lines)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err.strip().splitlines()


def one_error_line(code: int, lines: list[str], expected_code: int, *names: str) -> str:
    assert code == expected_code and len(lines) == 1 and "error: " in lines[0], lines
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def requests_made(addr: str) -> int:
    with urllib.request.urlopen(f"http://{addr}/stats") as r:
        return json.loads(r.read())["requests"]


def snapshot(out: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name in OUTPUTS or p.suffix == ".png"}


def without_run(metrics_file: Path) -> dict:
    return {k: v for k, v in json.loads(metrics_file.read_text()).items() if k != "_run"}


# ---------------------------------------------------------------- failed requests (defect 1)


def test_a_dead_or_garbage_endpoint_scores_nothing_keeps_earlier_outputs_and_a_rerun_asks_again(tmp_path):
    files = write_fixture_files(tmp_path / "fx")
    args = ["run", "--model", "judge", "--backend", "openai", "--bench", f"multimodal_rewardbench={files['multimodal_rewardbench']}",
            "--k", "2", "--swap", "--no-progress", "--max-retries", "1"]  # fmt: skip
    with running_server("scripted", "--behaviour", "position_biased") as good, running_server("scripted", "--behaviour", "non_json") as bad:
        res = cli(*args, "--base-url", f"http://{good}/v1", "--out", tmp_path / "clean")
        assert res.returncode == 0, res.stderr
        earlier = snapshot(tmp_path / "clean")
        assert set(earlier) >= set(OUTPUTS) and any(n.endswith(".png") for n in earlier)

        # nothing listens: exit 1, one line saying how many, the earlier complete outputs untouched
        dead = f"http://127.0.0.1:{closed_port()}/v1"
        res = cli(*args, "--base-url", dead, "--out", tmp_path / "clean", "--no-resume")
        line = one_error_line(res.returncode, res.stderr.strip().splitlines(), 1, "5 of 5 pairs", "connection")
        assert "Traceback" not in res.stderr and "--report-failed" in line
        assert snapshot(tmp_path / "clean") == earlier

        # answers that are not JSON: no result written at all, nothing saved as finished
        res = cli(*args, "--base-url", f"http://{bad}/v1", "--out", tmp_path / "run")
        one_error_line(res.returncode, res.stderr.strip().splitlines(), 1, "5 of 5 pairs", "bad_body")
        assert not any((tmp_path / "run" / f).exists() for f in OUTPUTS)
        assert (tmp_path / "run" / "items.partial.jsonl").read_text() == ""

        # the same command against a working endpoint asks for every pair again and scores as the clean run
        before = requests_made(good)
        res = cli(*args, "--base-url", f"http://{good}/v1", "--out", tmp_path / "run")
        assert res.returncode == 0, res.stderr
        assert requests_made(good) - before == 5 * 2 * 2  # 5 pairs, both orders, greedy + samples
    assert without_run(tmp_path / "run" / "metrics.json") == without_run(tmp_path / "clean" / "metrics.json")
    assert (tmp_path / "run" / "items.jsonl").read_bytes() == earlier["items.jsonl"]


def test_report_failed_scores_the_others_and_counts_the_failed_apart(tmp_path):
    """The server fails its first 2 requests (no retries): with --report-failed the 3 answered pairs are
    scored, the 2 failed ones are in no denominator and counted; the exit code still says 1; a rerun asks
    for those 2 only."""
    files = write_fixture_files(tmp_path / "fx")
    out = tmp_path / "out"
    with running_server("scripted", "--behaviour", "fail_first", "--fail-first", "2") as addr:
        args = ["run", "--model", "judge", "--backend", "openai", "--base-url", f"http://{addr}/v1", "--no-progress",
                "--bench", files["multimodal_rewardbench"], "--concurrency", "1", "--max-retries", "0",
                "--report-failed", "--out", out]  # fmt: skip
        res = cli(*args)
        one_error_line(res.returncode, res.stderr.strip().splitlines(), 1, "2 pairs")
        m = json.loads((out / "metrics.json").read_text())["multimodal_rewardbench"]
        assert (m["n"], m["failed"]) == (3, 2) and m["unparsable"] == 3  # this server's answers are not Table 1 ones
        assert json.loads((out / "metrics.json").read_text())["_run"]["failed_pairs"] == 2
        assert "2 pairs NOT SCORED" in (out / "table.md").read_text()
        items = [json.loads(x) for x in (out / "items.jsonl").read_text().splitlines()]
        assert len(items) == 5 and sum(bool(r.get("failed")) for r in items) == 2
        assert len((out / "items.partial.jsonl").read_text().splitlines()) == 3  # only answered pairs are finished
        # `score` counts them the same way from items.jsonl alone
        res = cli("score", "--items", out / "items.jsonl", "--out", tmp_path / "rescored")
        assert res.returncode == 0, res.stderr
        assert without_run(tmp_path / "rescored" / "metrics.json") == without_run(out / "metrics.json")
        before = requests_made(addr)
        res = cli(*args)
        assert res.returncode == 0, res.stderr
        assert requests_made(addr) - before == 2
    m = json.loads((out / "metrics.json").read_text())["multimodal_rewardbench"]
    assert (m["n"], m["failed"]) == (5, 0)


def test_a_record_cut_short_by_a_crash_is_asked_again(tmp_path):
    from r1reward_verl.eval.backends import OpenAIBackend
    from r1reward_verl.eval.runner import evaluate

    files = write_fixture_files(tmp_path / "fx")
    bench = {"multimodal_rewardbench": str(files["multimodal_rewardbench"])}
    with running_server("scripted", "--behaviour", "position_biased") as addr:
        backend = lambda: OpenAIBackend(f"http://{addr}/v1", "judge")  # noqa: E731
        evaluate(bench, backend(), tmp_path / "fresh", progress=False)
        evaluate(bench, backend(), tmp_path / "run", progress=False)
        partial = tmp_path / "run" / "items.partial.jsonl"
        lines = partial.read_text().splitlines(keepends=True)
        partial.write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 2])  # killed while writing line 3
        before = requests_made(addr)
        evaluate(bench, backend(), tmp_path / "run", progress=False)
        assert requests_made(addr) - before == 3 * 2  # pairs 3-5, both orders
    assert (tmp_path / "run" / "items.jsonl").read_bytes() == (tmp_path / "fresh" / "items.jsonl").read_bytes()


def test_outputs_an_earlier_run_made_and_this_one_does_not_are_removed(tmp_path):
    from r1reward_verl.eval.runner import score

    rec = {"benchmark": "vl_rewardbench", "id": "a", "category": "general", "group": "a", "label": 1, "greedy": True}
    score([{**rec, "preds": [1, 1, 2]}], tmp_path)  # greedy + 2 samples: accuracy-vs-k plots
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["accuracy_vs_k.png", "accuracy_vs_k_vl_rewardbench.png"]
    score([{**rec, "preds": [1]}], tmp_path)  # greedy only: no plot, and none of the earlier run's is left
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob(".staging*"))


# ---------------------------------------------------------------- user errors (defect 2)


@pytest.fixture()
def bad_inputs(tmp_path):
    files = write_fixture_files(tmp_path / "fx")
    d = tmp_path / "bad"
    d.mkdir()
    (d / "empty.jsonl").write_text("")
    pair = {"id": "p1", "question": "Which?", "images": [], "response_1": "a", "response_2": "b", "preferred": 1}
    (d / "pairs.jsonl").write_text(json.dumps(pair) + "\n")
    mmrb = json.loads(files["multimodal_rewardbench"].read_text())
    del mmrb[1]["Better"]
    (files["multimodal_rewardbench"].parent / "no_better.json").write_text(json.dumps(mmrb))  # beside its images
    rows = [{"id": "mmmu_1", "query": "Q?", "response": ["a", "b"], "image": {"bytes": _png("1"), "path": "1.png"},
             "human_ranking": [0, 1]},
            {"id": "mmmu_2", "query": "Q?", "response": ["a", "b"], "image": {"bytes": _png("2"), "path": "2.png"},
             "human_ranking": None}]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows), d / "vl_null_ranking.parquet")
    (d / "mcq").mkdir()
    Image.new("RGB", (8, 8)).save(d / "mcq" / "ok.png")
    (d / "mcq" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (d / "mcq" / "a_dir.png").mkdir()
    mm = [{"id": "g1", "image": "mcq/ok.png", "prompt": "Pick.", "chosen": "A", "rejected": "B"},
          {"id": "g2", "image": "mcq/corrupt.png", "prompt": "Pick.", "chosen": "A", "rejected": "B"},
          {"id": "g3", "image": "mcq/a_dir.png", "prompt": "Pick.", "chosen": "A", "rejected": "B"},
          {"id": "g4", "image": "mcq/ok.png", "prompt": "Pick again.", "chosen": "A", "rejected": "B"}]  # fmt: skip
    (d / "mm_bad_images.jsonl").write_text("".join(json.dumps(r) + "\n" for r in mm))
    return {**files, "dir": d}


RUN_ERRORS = {
    # case: (--bench value and extra options, what the one line must name)
    "missing file": (["{dir}/nope.jsonl"], ["nope.jsonl", "no such file"]),
    "missing file, named": (["vl_rewardbench={dir}/nope.jsonl"], ["nope.jsonl", "no such file"]),
    "a directory": (["{dir}"], ["bad", "is a directory"]),
    "empty file": (["{dir}/empty.jsonl"], ["empty.jsonl", "no rows"]),
    "pairs format": (["{dir}/pairs.jsonl"], ["pairs.jsonl", "row 1", "no benchmark's format"]),
    "pairs format, named": (["vl_rewardbench={dir}/pairs.jsonl"], ["pairs.jsonl", "row 1", "missing_field"]),
    "missing field": (["multimodal_rewardbench={dir}/../fx/no_better.json"], ["no_better.json", "row 2", "Better"]),
    "unknown benchmark": (["vlrewardbench={dir}/pairs.jsonl"], ["--bench", "unknown benchmark 'vlrewardbench'"]),
    "null human_ranking": (["{dir}/vl_null_ranking.parquet"], ["vl_null_ranking.parquet", "row 2", "human_ranking"]),
    "corrupt image": (["{dir}/mm_bad_images.jsonl"], ["mm_bad_images.jsonl", "row 2", "bad_image", "corrupt.png"]),
    "all rows rejected": (["vl_rewardbench={dir}/pairs.jsonl", "--skip-invalid"], ["pairs.jsonl", "no pair to evaluate"]),
    "--chunk-pairs 0": (["{dir}/pairs.jsonl", "--chunk-pairs", "0"], ["--chunk-pairs", "0"]),
    "--limit 0": (["{dir}/pairs.jsonl", "--limit", "0"], ["--limit", "0"]),
    "--ks": (["{dir}/pairs.jsonl", "--ks", "1,x"], ["--ks"]),
    "--media-root": (["{dir}/mm_bad_images.jsonl", "--media-root", "mm_rlhf_rewardbench={dir}/nowhere"],
                     ["--media-root", "nowhere", "not a directory"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(RUN_ERRORS))
def test_eval_run_user_errors_are_one_line_exit_2(case, bad_inputs, tmp_path, capsys):
    bench, names = RUN_ERRORS[case]
    bench = [b.format(dir=bad_inputs["dir"]) for b in bench]
    out = tmp_path / "out"
    code, lines = in_process(capsys, "run", "--model", "judge", "--backend", "openai", "--no-progress", "--base-url",
                             f"http://127.0.0.1:{closed_port()}/v1", "--out", out, "--bench", *bench)  # fmt: skip
    one_error_line(code, lines, 2, *names)
    assert not out.exists()  # nothing asked, nothing written


def test_the_command_line_prints_no_traceback_for_a_user_error(bad_inputs):
    res = cli("inspect", "--bench", bad_inputs["dir"] / "vl_null_ranking.parquet")
    assert "Traceback" not in res.stderr
    one_error_line(res.returncode, res.stderr.strip().splitlines(), 2, "vl_null_ranking.parquet: row 2: bad_label")


def test_undecodable_media_and_null_rankings_are_bad_rows_skipped_and_counted(bad_inputs, tmp_path, capsys):
    d = bad_inputs["dir"]
    loaded = load_benchmark("mm_rlhf_rewardbench", d / "mm_bad_images.jsonl", skip_invalid=True)
    assert [p.id for p in loaded.pairs] == ["g1", "g4"] and loaded.rejected == {"bad_image": 2}
    with pytest.raises(BadInput, match=r"mm_rows.jsonl: row 2: bad_image: .*a_dir.png is a directory, not an image"):
        load_benchmark("mm_rlhf_rewardbench", _only_rows(d, [0, 2]))
    vl = load_benchmark("vl_rewardbench", d / "vl_null_ranking.parquet", skip_invalid=True)
    assert [p.id for p in vl.pairs] == ["mmmu_1"] and vl.rejected == {"bad_label": 1}
    # through `eval run --skip-invalid` against a live endpoint: evaluated, the bad rows counted
    with running_server("scripted", "--behaviour", "position_biased") as addr:
        code, lines = in_process(capsys, "run", "--model", "judge", "--backend", "openai", "--base-url", f"http://{addr}/v1",
                                 "--bench", d / "mm_bad_images.jsonl", "--skip-invalid", "--no-progress",
                                 "--out", tmp_path / "out")  # fmt: skip
    assert code == 0, lines
    doc = json.loads((tmp_path / "out" / "metrics.json").read_text())
    inputs = doc["_run"]["inputs"]["mm_rlhf_rewardbench"]
    assert inputs["rejected_by_reason"] == {"bad_image": 2} and inputs["evaluated"] == 2
    assert doc["mm_rlhf_rewardbench"]["n"] == 2


def _only_rows(d: Path, keep: list[int]) -> Path:
    lines = (d / "mm_bad_images.jsonl").read_text().splitlines(keepends=True)
    out = d / "mm_rows.jsonl"
    out.write_text("".join(lines[i] for i in keep))
    return out


# ---------------------------------------------------------------- eval score: labels


def _items(path: Path, *records: dict) -> Path:
    base = {"benchmark": "vl_rewardbench", "category": "general", "greedy": True}
    path.write_text("".join(json.dumps({**base, "id": f"i{i}", "group": f"i{i}", **r}) + "\n" for i, r in enumerate(records)))
    return path


def test_score_reads_labels_written_as_text_and_refuses_other_labels(tmp_path, capsys):
    items = _items(tmp_path / "items.jsonl", {"label": "2", "preds": [2]}, {"label": 1, "preds": ["1"]},
                   {"label": "1", "preds": [2], "swapped": {"label": "2", "preds": [2]}})  # fmt: skip
    code, lines = in_process(capsys, "score", "--items", items, "--out", tmp_path / "s")
    assert code == 0, lines
    m = json.loads((tmp_path / "s" / "metrics.json").read_text())["vl_rewardbench"]
    assert m["overall_acc"] == pytest.approx(200 / 3, abs=1e-3) and m["position_swap"]["swapped"]["overall_acc"] == 100.0
    bad = _items(tmp_path / "bad.jsonl", {"label": 1, "preds": [1]}, {"label": 3, "preds": [1]})
    one_error_line(*in_process(capsys, "score", "--items", bad, "--out", tmp_path / "b"), 2, "bad.jsonl: line 2", "label", "3")
    bad = _items(tmp_path / "badpred.jsonl", {"label": 1, "preds": [0]})
    one_error_line(*in_process(capsys, "score", "--items", bad, "--out", tmp_path / "b"), 2, "badpred.jsonl: line 1", "0")
    bad = _items(tmp_path / "badcat.jsonl", {"label": 1, "preds": [1], "category": "math"})
    one_error_line(*in_process(capsys, "score", "--items", bad, "--out", tmp_path / "b"), 2, "badcat.jsonl: line 1", "'math'")
    one_error_line(*in_process(capsys, "score", "--items", tmp_path / "nope.jsonl", "--out", tmp_path / "b"), 2,
                   "nope.jsonl: no such file")  # fmt: skip
    (tmp_path / "empty.jsonl").write_text("")
    one_error_line(*in_process(capsys, "score", "--items", tmp_path / "empty.jsonl", "--out", tmp_path / "b"), 2,
                   "empty.jsonl: no records")  # fmt: skip
    assert not (tmp_path / "b").exists()
