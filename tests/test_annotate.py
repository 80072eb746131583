"""The annotator against a live scripted endpoint on 127.0.0.1: attempts, balance, resume after a crash."""

import asyncio
import json
import subprocess
import sys
import time
import urllib.request

from preprocess.annotate import annotate
from preprocess.pairs import convert
from tests.servers import running_server
from tests.test_preprocess import pair, png, write_jsonl


def rows(n, need_of):
    out = []
    for i in range(n):
        good, bad = f"answer {i} (correct)", f"answer {i} wrong"
        pref = 1 + i % 2
        out.append(pair(i, question=f"Q{i} [need={need_of(i)}]", response_1=good if pref == 1 else bad,
                        response_2=bad if pref == 1 else good, preferred=pref))  # fmt: skip
    return out


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_attempts_reasoning_balance_and_sft_pipeline(tmp_path, monkeypatch):
    needs = {0: 1, 1: 2, 2: 3, 3: 0}
    src = write_jsonl(tmp_path / "in.jsonl", rows(16, lambda i: needs[i % 4]))
    monkeypatch.setenv("R1R_ANNOTATOR_KEY", "sekrit-key")
    with running_server("scripted", "--behaviour", "judge") as addr:
        s = asyncio.run(annotate([str(src)], tmp_path / "ann.jsonl", base_url=f"http://{addr}/v1", model="judge",
                                 api_key_env="R1R_ANNOTATOR_KEY", concurrency=4, backoff=0.01, progress=False))  # fmt: skip
    assert s["accounted"] and s["annotated"] == 16 and s["request_failed"] == 0
    assert (s["attempts_1"], s["attempts_2"], s["attempts_3"], s["attempts_failed"]) == (4, 4, 4, 4)
    recs = {r["id"]: r for r in read_jsonl(tmp_path / "ann.jsonl")}
    for i in range(16):
        r = recs[f"p{i}"]
        expected = needs[i % 4] or "failed"
        assert r["attempts"] == expected
        if expected == "failed":
            assert r["reasoning"] is None
        else:
            assert r["reasoning"] == f"Response {r['preferred']} answers the question better."
        right = r["response_1"] if r["preferred"] == 1 else r["response_2"]
        assert "(correct)" in right  # the swap moved the label with the responses
    assert sum(r["preferred"] == 1 for r in recs.values()) == 8  # balanced before asking
    assert any(r["swapped"] for r in recs.values()) and "sekrit-key" not in json.dumps(list(recs.values()))
    # the annotated file feeds preprocess.pairs: RL difficulty split and SFT data
    summary = convert([str(tmp_path / "ann.jsonl")], tmp_path / "rl", sft_out=tmp_path / "sft", val_fraction=0.0,
                      difficulty_filter=True, progress=False)  # fmt: skip
    assert summary["written"] == 12 and summary["rejected_by_reason"] == {"difficulty_filtered": 4}
    assert summary["sft_written_by_split"] == {"train": 12 - 4}  # failed rows have no reasoning


def test_resume_after_crash(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", rows(12, lambda i: 1))
    out = tmp_path / "ann.jsonl"
    with running_server("scripted", "--behaviour", "judge", "--latency", "0.3") as addr:
        cmd = [sys.executable, "-m", "preprocess.annotate", "--input", str(src), "--out", str(out),
               "--base-url", f"http://{addr}/v1", "--concurrency", "1", "--no-progress"]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while (not out.exists() or len(out.read_text().splitlines()) < 3) and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.kill()  # crash mid-run
        proc.wait()
        with open(out, "a") as f:
            f.write('{"id": "p99", "question": "torn')  # a half-written line, as a crash can leave
        first = [json.loads(line)["id"] for line in out.read_text().splitlines()[:-1]]
        assert 3 <= len(first) < 12
        with urllib.request.urlopen(f"http://{addr}/stats") as r:
            before = json.loads(r.read())["requests"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        with urllib.request.urlopen(f"http://{addr}/stats") as r:
            after = json.loads(r.read())["requests"]
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["done_before"] == len(first) and summary["annotated"] == 12 - len(first)
    assert after - before <= 12 - len(first) + 1  # only the rest (and at most the row in flight) was asked again
    ids = [r["id"] for r in read_jsonl(out)]
    assert sorted(ids) == sorted(f"p{i}" for i in range(12)) and len(set(ids)) == 12  # no duplicates, no torn line
    assert ids[: len(first)] == first  # append-only


def test_request_failures_are_counted_and_left_for_next_run(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", rows(3, lambda i: 1) + [pair(9, images=["missing.png"])])
    with running_server("scripted", "--behaviour", "fail500") as addr:
        s = asyncio.run(annotate([str(src)], tmp_path / "ann.jsonl", base_url=f"http://{addr}/v1", request_retries=1,
                                 backoff=0.01, skip_invalid=True, progress=False))  # fmt: skip
    assert s["request_failed"] == 3 and s["request_errors"] == {"http_5xx": 3} and s["rejected_missing_image"] == 1
    assert s["accounted"] and (tmp_path / "ann.jsonl").read_text() == ""


def test_images_are_sent_as_data_uris(tmp_path):
    from preprocess.annotate import openai_messages
    from preprocess.records import normalize_pair

    (tmp_path / "a.png").write_bytes(png())
    p = normalize_pair(pair(0, images=["a.png"]), tmp_path)
    content = openai_messages(p)[0]["content"]
    assert content[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert content[1]["type"] == "text" and "[Response 2]: second 0" in content[1]["text"]
