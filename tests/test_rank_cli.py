"""``python -m r1reward_verl.judge.rank`` when things go wrong: a dead or garbage judge, a bad ``--out``, an interrupted run
and its resume, a torn or corrupt output, non-UTF-8 input. Against live scripted judges on 127.0.0.1
(``tests/support/judges.py``) and real files."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from r1reward_verl.judge.rank import main as rank_main
from tests.support.judges import C5, C8, scripted_judge, write_input
from tests.support.servers import closed_port

REPO = Path(__file__).resolve().parents[1]
OUTPUT_KEYS = ("ranking", "scores", "rounds_reached")


def rank(inp, out, url, *extra):
    return rank_main(["--input", str(inp), "--out", str(out), "--base-url", str(url), "--model", "judge",
                      "--backoff", "0.01", "--timeout", "30", *map(str, extra)])  # fmt: skip


def rows_of(out):
    return [json.loads(x) for x in Path(out).read_text().splitlines()]


def one_line_error(err, *needles):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for n in needles:
        assert str(n) in lines[0], (n, lines[0])
    return lines[0]


def summary_of(out):
    return json.loads(Path(str(out) + ".summary.json").read_text())


# ------------------------------------------------------------------------------------ a judge that does not judge


@pytest.mark.parametrize("mode", ["round_robin", "knockout"])
def test_dead_judge_rows_are_failed_not_ranked(tmp_path, capsys, mode):
    """A dead judge: exit 1, every row marked failed with its error kind, no ranking or scores (not even a stale
    one the input row carried); the knockout bracket stops at its first failed round."""
    rows = [{"id": "a", "question": "q", "images": [], "candidates": C5},
            {"id": 3, "question": "q", "images": [], "candidates": ["x", "yy"], "ranking": [1, 0], "scores": [0, 1],
             "rounds_reached": [1, 2]}]  # fmt: skip
    inp, out = write_input(tmp_path, rows), tmp_path / "out.jsonl"
    rc = rank(inp, out, f"http://127.0.0.1:{closed_port()}/v1", "--mode", mode, "--max-retries", "1")
    assert rc == 1
    got = rows_of(out)
    assert [r["id"] for r in got] == ["a", 3]
    for r in got:
        assert r["failed"] is True and r["error"] == "connection" and not any(k in r for k in OUTPUT_KEYS), r
        assert r["judge"]["failed_calls"] == r["judge_calls"] > 0
    # round robin asks all 20 calls of C5 in one batch; knockout's first round has 1 match (3 byes): 2 calls
    assert got[0]["judge_calls"] == (20 if mode == "round_robin" else 2)
    s = summary_of(out)
    assert s["ranked"] == 0 and s["failed"] == 2 and s["failed_by_error"] == {"connection": 2}
    assert "2 of 2 rows failed" in capsys.readouterr().err


def test_garbage_judge_rows_are_failed(tmp_path):
    """Replies that never hold a verdict: a row the judge said nothing about is failed ("unparsable"), not a tie."""
    inp, out = write_input(tmp_path), tmp_path / "out.jsonl"
    with scripted_judge("garbage") as srv:
        rc = rank(inp, out, srv.url)
    assert rc == 1
    got = rows_of(out)
    assert all(r["failed"] and r["error"] == "unparsable" and "ranking" not in r for r in got)
    assert srv.stats["requests"] == 20 + 56 + 2


def test_some_failed_calls_fail_the_row(tmp_path):
    """HTTP 500 on every other request and no retries: half the calls of each row failed, so each row is failed
    (a failed call is not counted as a 1/2 tie in the CLI's output)."""
    inp, out = write_input(tmp_path), tmp_path / "out.jsonl"
    with scripted_judge("flaky") as srv:
        rc = rank(inp, out, srv.url, "--max-retries", "0", "--concurrency", "1")
    assert rc == 1
    got = rows_of(out)
    assert [r["judge"]["failed_calls"] for r in got] == [10, 28, 1]
    assert all(r["failed"] and r["error"] == "http_5xx" and "scores" not in r for r in got)


def test_failed_rows_are_asked_again_and_done_rows_kept(tmp_path, capsys):
    """Row b fails (its question makes the judge answer 500); a and 3 are ranked. A rerun with a dead judge keeps
    them and b stays failed; a rerun with a good judge asks only b's 56 calls and the output is whole, in input
    order, one line per id, a and 3 byte for byte as the first run wrote them."""
    inp, out = write_input(tmp_path), tmp_path / "out.jsonl"
    with scripted_judge("longer", fail_on="And here?") as srv:
        assert rank(inp, out, srv.url, "--max-retries", "0") == 1
    first = out.read_text().splitlines()
    got = [json.loads(x) for x in first]
    assert [r["id"] for r in got] == ["a", "b", 3]
    assert got[0]["ranking"] == [3, 1, 4, 0, 2] and got[2]["ranking"] == [1, 0]
    assert got[1]["failed"] and got[1]["error"] == "http_5xx" and "ranking" not in got[1]

    assert rank(inp, out, f"http://127.0.0.1:{closed_port()}/v1", "--max-retries", "0") == 1
    second = out.read_text().splitlines()
    assert second[0] == first[0] and second[2] == first[2] and json.loads(second[1])["error"] == "connection"
    assert summary_of(out)["done_before"] == 2

    with scripted_judge("longer") as srv:
        assert rank(inp, out, srv.url) == 0
    assert srv.stats["requests"] == 56
    third = out.read_text().splitlines()
    assert len(third) == 3 and third[0] == first[0] and third[2] == first[2]
    b = json.loads(third[1])
    assert b["id"] == "b" and b["ranking"] == [3, 1, 5, 7, 6, 0, 4, 2] and "failed" not in b and "error" not in b
    s = summary_of(out)
    assert s["done_before"] == 2 and s["ranked"] == 1 and s["failed"] == 0


# ------------------------------------------------------------------------------------------------------- --out


def test_bad_out_is_refused_before_judging(tmp_path, capsys):
    inp = write_input(tmp_path)
    before = inp.read_bytes()
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    (tmp_path / "link.jsonl").symlink_to(inp)
    (tmp_path / "o2.jsonl.summary.json").mkdir()
    with scripted_judge("longer") as srv:
        for out, needle in [(tmp_path / "adir", "is a directory"), (inp, "is the input"),
                            (tmp_path / "link.jsonl", "is the input"), (tmp_path / "afile" / "o.jsonl", "afile"),
                            (tmp_path / "o2.jsonl", "o2.jsonl.summary.json")]:  # fmt: skip
            assert rank(inp, out, srv.url) == 2, out
            one_line_error(capsys.readouterr().err, "--out", needle)
        assert srv.stats["requests"] == 0
    assert inp.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile", "img", "in.jsonl", "link.jsonl",
                                                          "o2.jsonl.summary.json"]  # fmt: skip


# ---------------------------------------------------------------------------------------------- resume


def test_killed_run_keeps_its_finished_rows_and_resumes(tmp_path):
    """The judge never answers row b; once rows a and 3 are in the output, the run is killed (SIGKILL: no clean-up
    of any kind). Both rows are there, whole; the rerun asks only b's 56 calls."""
    rows = [{"id": "a", "question": "q", "images": [], "candidates": C5},
            {"id": 3, "question": "Text only", "images": [], "candidates": ["short", "much longer"]},
            {"id": "b", "question": "And here?", "images": [], "candidates": C8}]  # fmt: skip
    inp, out = write_input(tmp_path, rows), tmp_path / "out.jsonl"
    with scripted_judge("longer", hang_on="And here?") as srv:
        proc = subprocess.Popen([sys.executable, "-m", "r1reward_verl.judge.rank", "--input", str(inp), "--out", str(out),
                                 "--base-url", srv.url, "--timeout", "600", "--concurrency", "16"],
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while not (out.exists() and out.read_text().count("\n") == 2 and srv.stats["hung"] > 0):
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "rows a and 3 were not written while b was pending"
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            proc.stderr.close()
    kept = out.read_text().splitlines()
    assert sorted(str(json.loads(x)["id"]) for x in kept) == ["3", "a"]
    with scripted_judge("longer") as srv:
        assert rank(inp, out, srv.url) == 0
    assert srv.stats["requests"] == 56
    final = out.read_text().splitlines()
    assert [json.loads(x)["id"] for x in final] == ["a", 3, "b"]  # input order
    assert set(final[:2]) == set(kept)


def test_torn_last_line_is_redone_corrupt_middle_line_stops(tmp_path, capsys):
    inp, out = write_input(tmp_path), tmp_path / "out.jsonl"
    with scripted_judge("longer") as srv:
        assert rank(inp, out, srv.url) == 0
    whole = out.read_bytes()
    lines = whole.splitlines(keepends=True)
    # a crash while writing the last row: its line is cut short; the rerun cuts it and asks row 3 again (2 calls)
    out.write_bytes(b"".join(lines[:2]) + lines[2][:15])
    with scripted_judge("longer") as srv:
        assert rank(inp, out, srv.url) == 0
    assert srv.stats["requests"] == 2
    assert out.read_bytes() == whole
    capsys.readouterr()
    # a bad line that is not the last is no crash's doing: stop, name it, change nothing, ask nothing
    for bad in (b'{"id": "b", "ranki\n', b"\xff\xfe not utf-8\n", b'["not", "an object"]\n'):
        broken = lines[0] + bad + lines[2]
        out.write_bytes(broken)
        with scripted_judge("longer") as srv:
            assert rank(inp, out, srv.url) == 2
        assert srv.stats["requests"] == 0 and out.read_bytes() == broken
        one_line_error(capsys.readouterr().err, f"{out}:2:")


# ---------------------------------------------------------------------------------------------- the input


def test_non_utf8_input_is_one_line_naming_file_and_row(tmp_path, capsys):
    inp = write_input(tmp_path)
    lines = inp.read_bytes().splitlines(keepends=True)
    inp.write_bytes(lines[0] + b'{"id": "x", "question": "caf\xe9", "candidates": ["a", "b"]}\n' + lines[2])
    out = tmp_path / "out.jsonl"
    with scripted_judge("longer") as srv:
        assert rank(inp, out, srv.url) == 2
        one_line_error(capsys.readouterr().err, f"{inp}: row 2:", "UTF-8")
        assert srv.stats["requests"] == 0 and not out.exists()
        assert rank(inp, out, srv.url, "--skip-invalid") == 0
    assert [r["id"] for r in rows_of(out)] == ["a", 3]
    assert summary_of(out)["skipped_by_reason"] == {"bad_encoding": 1}
