"""The annotator against a live scripted endpoint on 127.0.0.1: attempts, balance, resume after a crash."""

import asyncio
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from r1reward_verl.data.annotate import annotate, main
from r1reward_verl.data.pairs import convert
from tests.cli_support import one_line, run_main
from tests.support.servers import closed_port, running_server
from tests.support.pairs import pair, png, rows, write_jsonl


class Judge:
    """An OpenAI-compatible annotator on 127.0.0.1 (``http.server`` in a thread of the test): it picks the
    response that contains ``(correct)`` and counts ``requests``. With ``hold_at=N`` the N-th request
    sets ``held`` and is answered only when ``release`` is set: a test waits on events, not the clock."""

    def __init__(self, hold_at=None):
        self.hold_at, self.requests, self.lock = hold_at, 0, threading.Lock()
        self.held, self.release = threading.Event(), threading.Event()

    def __enter__(self):
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with judge.lock:
                    judge.requests += 1
                    n = judge.requests
                if n == judge.hold_at:
                    judge.held.set()
                    judge.release.wait()
                text = body["messages"][0]["content"][-1]["text"]
                first = text.split("[Response 1]:", 1)[1].split("[Response 2]:", 1)[0]
                pick = 1 if "(correct)" in first else 2
                reply = f"<think>Response {pick} answers the question better.</think><answer>{pick}</answer>"
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client is gone (killed while this request was held)
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_attempts_reasoning_balance_and_sft_pipeline(tmp_path, monkeypatch):
    needs = {0: 1, 1: 2, 2: 3, 3: 0}
    src = write_jsonl(tmp_path / "in.jsonl", rows(16, lambda i: needs[i % 4]))
    monkeypatch.setenv("R1R_ANNOTATOR_KEY", "sekrit-key")
    with running_server("scripted", "--behaviour", "annotator") as addr:
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
    # the cold start learns from every pair with a reasoning, the easy ones too (only the RL set is filtered);
    # failed rows have none
    assert summary["sft_written_by_split"] == {"train": 16 - 4}


def test_resume_after_crash(tmp_path):
    """Killed while its 4th request is held by the server (3 rows written: concurrency 1 writes a row
    before it asks the next), then a torn line appended: the rerun asks for exactly the other 9."""
    src = write_jsonl(tmp_path / "in.jsonl", rows(12, lambda i: 1))
    out = tmp_path / "ann.jsonl"
    with Judge(hold_at=4) as judge:
        cmd = [sys.executable, "-m", "preprocess.annotate", "--input", str(src), "--out", str(out),
               "--base-url", judge.url, "--concurrency", "1", "--no-progress"]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert judge.held.wait(timeout=300), "the annotator never sent its 4th request"
        finally:
            proc.kill()  # crash mid-run, its 4th request unanswered
            proc.wait()
        judge.release.set()
        with open(out, "a") as f:
            f.write('{"id": "p99", "question": "torn')  # a half-written line, as a crash can leave
        first = [json.loads(line)["id"] for line in out.read_text().splitlines()[:-1]]
        assert len(first) == 3
        before = judge.requests
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        asked = judge.requests - before
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["done_before"] == 3 and summary["annotated"] == 9 and asked == 9  # nothing done was asked again
    ids = [r["id"] for r in read_jsonl(out)]
    assert sorted(ids) == sorted(f"p{i}" for i in range(12)) and len(set(ids)) == 12  # no duplicates, no torn line
    assert ids[:3] == first  # append-only


def test_request_failures_are_counted_and_left_for_next_run(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", rows(3, lambda i: 1) + [pair(9, images=["missing.png"])])
    with running_server("scripted", "--behaviour", "fail500") as addr:
        s = asyncio.run(annotate([str(src)], tmp_path / "ann.jsonl", base_url=f"http://{addr}/v1", request_retries=1,
                                 backoff=0.01, skip_invalid=True, progress=False))  # fmt: skip
    assert s["request_failed"] == 3 and s["request_errors"] == {"http_5xx": 3} and s["rejected_missing_image"] == 1
    assert s["accounted"] and (tmp_path / "ann.jsonl").read_text() == ""


def test_images_are_sent_as_data_uris(tmp_path):
    from r1reward_verl.data.annotate import openai_messages
    from r1reward_verl.data.records import normalize_pair

    (tmp_path / "a.png").write_bytes(png())
    p = normalize_pair(pair(0, images=["a.png"]), tmp_path)
    content = openai_messages(p)[0]["content"]
    assert content[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert content[1]["type"] == "text" and "[Response 2]: second 0" in content[1]["text"]


def cli(capsys, *args) -> tuple[int, str, str]:
    """``python -m preprocess.annotate ARGS`` in this process: exit code (argparse's too), stdout, stderr."""
    return run_main(main, capsys, *args, "--no-progress")


def records_lines(ids) -> str:
    return "".join(json.dumps({"id": f"p{i}", "attempts": 1, "reasoning": f"r{i}"}) + "\n" for i in ids)


def test_a_blank_line_in_the_output_loses_nothing(tmp_path, capsys):
    """Issue 23: one blank line in the middle of an 8-row output cut the 5 rows after it, which were paid for
    again. Blank lines are skipped; only the 2 rows not in the output are asked for."""
    src = write_jsonl(tmp_path / "in.jsonl", rows(10, lambda i: 1))
    out = tmp_path / "ann.jsonl"
    before = records_lines(range(3)) + "\n" + records_lines(range(3, 8))
    out.write_text(before)
    with Judge() as judge:
        code, stdout, err = cli(capsys, "--input", src, "--out", out, "--base-url", judge.url)
    assert code == 0, err
    assert judge.requests == 2 and json.loads(stdout)["done_before"] == 8
    text = out.read_text()
    assert text.startswith(before)  # append-only: nothing that was done is cut
    ids = [json.loads(line)["id"] for line in text.splitlines() if line.strip()]
    assert sorted(ids) == sorted(f"p{i}" for i in range(10))


def test_a_corrupt_line_in_the_middle_stops_the_run_naming_it_and_destroys_nothing(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", rows(10, lambda i: 1))
    out = tmp_path / "ann.jsonl"
    before = records_lines(range(3)) + '{"id": "p3", "reason\n' + records_lines(range(4, 8))
    out.write_text(before)
    with Judge() as judge:
        code, stdout, err = cli(capsys, "--input", src, "--out", out, "--base-url", judge.url)
    assert code == 2 and f"{out}:4: " in one_line(err)
    assert out.read_text() == before and judge.requests == 0


def test_an_unterminated_but_whole_last_line_is_kept(tmp_path, capsys):
    """A crash between a record and its newline: the record counts as done, and the next one is not glued to it."""
    src = write_jsonl(tmp_path / "in.jsonl", rows(4, lambda i: 1))
    out = tmp_path / "ann.jsonl"
    out.write_text(records_lines(range(2)).rstrip("\n"))
    with Judge() as judge:
        code, stdout, err = cli(capsys, "--input", src, "--out", out, "--base-url", judge.url)
    assert code == 0, err
    assert judge.requests == 2
    assert sorted(r["id"] for r in read_jsonl(out)) == ["p0", "p1", "p2", "p3"]


def test_out_equal_to_input_is_refused(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", rows(3, lambda i: 1))
    before = src.read_bytes()
    for out in (src, tmp_path / "." / "in.jsonl"):
        code, stdout, err = cli(capsys, "--input", src, "--out", out, "--base-url", f"http://127.0.0.1:{closed_port()}/v1")
        assert code == 2 and "--out" in one_line(err)
    assert src.read_bytes() == before


def test_a_duplicate_id_in_the_input_stops_naming_it_or_is_skipped_and_counted(tmp_path, capsys):
    recs = rows(4, lambda i: 1)
    recs.insert(2, dict(recs[0], question="another question"))  # row 3 repeats p0's id
    src = write_jsonl(tmp_path / "in.jsonl", recs)
    out = tmp_path / "ann.jsonl"
    with Judge() as judge:
        code, stdout, err = cli(capsys, "--input", src, "--out", out, "--base-url", judge.url)
        assert code == 2 and f"{src}: row 3: duplicate_id" in one_line(err)
        code, stdout, err = cli(capsys, "--input", src, "--out", tmp_path / "ann2.jsonl", "--base-url", judge.url,
                                "--skip-invalid")  # fmt: skip
    assert code == 0, err
    s = json.loads(stdout)
    assert (s["read"], s["annotated"], s["done_before"], s["rejected_duplicate_id"], s["accounted"]) == (5, 4, 0, 1, True)
    assert sorted(r["id"] for r in read_jsonl(tmp_path / "ann2.jsonl")) == ["p0", "p1", "p2", "p3"]


@pytest.mark.parametrize("case", ["missing_input", "unset_api_key_env", "out_is_a_directory"])
def test_refused_before_any_output_is_made(tmp_path, capsys, monkeypatch, case):
    src = write_jsonl(tmp_path / "in.jsonl", rows(2, lambda i: 1))
    out = tmp_path / "new" / "ann.jsonl"
    args = ["--input", src, "--out", out, "--request-retries", 0]
    if case == "missing_input":
        args[1] = tmp_path / "nope.jsonl"
    elif case == "unset_api_key_env":
        monkeypatch.delenv("R1R_NO_SUCH_KEY", raising=False)
        args += ["--api-key-env", "R1R_NO_SUCH_KEY"]
    else:
        out.mkdir(parents=True)
        args[3] = out
    with Judge() as judge:
        code, stdout, err = cli(capsys, *args, "--base-url", judge.url)
    line = one_line(err)
    assert code == 2 and judge.requests == 0
    if case == "missing_input":
        assert line == f"error: {tmp_path / 'nope.jsonl'}: no such file" and not out.parent.exists()
    elif case == "unset_api_key_env":
        assert "R1R_NO_SUCH_KEY" in line and not out.parent.exists()
    else:
        assert line.startswith(f"error: --out {out}: ") and not list(out.iterdir())


def _stats(addr: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(f"http://{addr}/stats", timeout=10) as r:
        return json.loads(r.read())


def test_critiques_feed_the_critic_and_the_scorer_through_preprocess_pairs(tmp_path, tiny_model_dir, capsys):
    """``--critiques`` against a scripted critic on 127.0.0.1: each response asked on its own with the pair's images,
    the pair's order kept; an empty reply is a failure (nothing written, asked again next run, nothing else is);
    ``preprocess.pairs --critic-out`` then writes the critic's rows and the scorer's, which verl's SFT dataset and
    the BT dataset read with the tiny Qwen2.5-VL's processor."""
    from omegaconf import OmegaConf
    from transformers import AutoProcessor
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    from r1reward_verl.bt.dataset import BTPairDataset
    from r1reward_verl.data.outputs import critique_request, scored_response
    from tests.support.pairs import read

    (tmp_path / "a.png").write_bytes(png())
    recs = rows(6, lambda i: 1)
    recs[1]["images"] = ["a.png"]
    recs[4]["response_2"] += " [empty]"  # the critic answers this one with nothing
    src = write_jsonl(tmp_path / "in.jsonl", recs)
    out = tmp_path / "crit.jsonl"
    with running_server("scripted", "--behaviour", "critic") as addr:
        kw = dict(base_url=f"http://{addr}/v1", model="critic-m", concurrency=3, backoff=0.01, progress=False, critiques=True)
        s = asyncio.run(annotate([str(src)], out, **kw))
        asked = _stats(addr)
        code, stdout, err = cli(capsys, "--critiques", "--input", src, "--out", out, "--base-url", kw["base_url"],
                                "--model", "critic-m", "--backoff", "0.01")  # fmt: skip
        asked_again = _stats(addr)["requests"] - asked["requests"]
    again = json.loads(stdout)
    assert code == 1, err  # a pair still failed: not a success
    assert (s["annotated"], s["request_failed"], s["request_errors"], s["accounted"]) == (5, 1, {"empty_critique": 1}, True), s
    assert "attempts_1" not in s
    assert asked["images"] == 2  # pair 1's image, once with each response
    assert (again["done_before"], again["annotated"], again["request_failed"]) == (5, 0, 1) and asked_again == 2
    got = {r["id"]: r for r in read_jsonl(out)}
    assert sorted(got) == ["p0", "p1", "p2", "p3", "p5"]
    for rec in recs:
        if rec["id"] not in got:
            continue
        r = got[rec["id"]]
        assert (r["response_1"], r["response_2"], r["preferred"]) == (rec["response_1"], rec["response_2"], rec["preferred"])
        for k in (1, 2):
            verdict = "right" if "(correct)" in rec[f"response_{k}"] else "wrong"
            assert r[f"critique_{k}"] == f"Critique of {rec[f'response_{k}']}: {verdict}."
        assert r["critic"] == "critic-m" and "swapped" not in r

    # + one pair without critiques: counted, its RL and BT rows written, no critic rows
    extra = write_jsonl(tmp_path / "extra.jsonl", [pair(9)])
    summary = convert([str(out), str(extra)], tmp_path / "rl", bt_out=tmp_path / "bt", critic_out=tmp_path / "critic",
                      val_fraction=0.0, progress=False)  # fmt: skip
    assert summary["written"] == 6 and summary["bt_written_by_split"] == {"train": 6}
    assert summary["critic_written_by_split"] == {"train": 5} and summary["critic_missing"] == 1
    sft, bt = read(tmp_path / "critic" / "sft" / "train.parquet"), read(tmp_path / "critic" / "bt" / "train.parquet")
    assert len(sft) == 10 and len(bt) == 5
    for row in sft:
        rec = got[row["id"].rsplit("-r", 1)[0]]
        k = int(row["label"])
        assert row["id"] == f"{rec['id']}-r{k}"
        assert [m["content"] for m in row["messages"]] == [
            critique_request(rec["question"], rec[f"response_{k}"], len(rec["images"])), rec[f"critique_{k}"]]
        assert len(row["images"]) == len(rec["images"])
    for row in bt:
        rec = got[row["id"]]
        good, bad = rec["preferred"], 3 - rec["preferred"]
        assert row["chosen_messages"][1]["content"] == scored_response(rec[f"response_{good}"], rec[f"critique_{good}"])
        assert row["rejected_messages"][1]["content"] == scored_response(rec[f"response_{bad}"], rec[f"critique_{bad}"])
        assert row["chosen_messages"][1]["content"].endswith(": right.")  # the right response, with its critique

    proc = AutoProcessor.from_pretrained(tiny_model_dir)
    cfg = {"max_length": 512, "truncation": "error", "pad_mode": "no_padding", "image_key": "images"}
    critic_ds = MultiTurnSFTDataset(str(tmp_path / "critic" / "sft" / "train.parquet"), proc.tokenizer,
                                    OmegaConf.create({**cfg, "messages_key": "messages"}), processor=proc)  # fmt: skip
    scorer_ds = BTPairDataset(str(tmp_path / "critic" / "bt" / "train.parquet"), proc.tokenizer,
                              OmegaConf.create({**cfg, "chosen_key": "chosen_messages", "rejected_key": "rejected_messages"}),
                              processor=proc)  # fmt: skip
    assert len(critic_ds) == 10 and len(scorer_ds) == 5
    with_image = next(i for i, row in enumerate(sft) if row["images"])
    assert "pixel_values" in critic_ds[with_image]["multi_modal_inputs"]
    item = scorer_ds[0]
    assert item["chosen"]["loss_mask"].sum() == 1 and item["rejected"]["loss_mask"].sum() == 1


def test_a_bad_critique_stops_preprocess_naming_the_row_or_is_skipped_and_counted(tmp_path):
    from r1reward_verl.data.records import InvalidInput

    recs = [dict(pair(i), critique_1=f"c1 {i}", critique_2=f"c2 {i}") for i in range(4)]
    recs[2]["critique_2"] = ""  # one given, the other empty
    src = write_jsonl(tmp_path / "in.jsonl", recs)
    with pytest.raises(InvalidInput, match=r"in\.jsonl: row 3: bad_critique"):
        convert([str(src)], tmp_path / "rl", critic_out=tmp_path / "critic", val_fraction=0.0, progress=False)
    assert not (tmp_path / "critic" / "sft" / "train.parquet").exists()
    s = convert([str(src)], tmp_path / "rl", critic_out=tmp_path / "critic", val_fraction=0.0, skip_invalid=True,
                progress=False)  # fmt: skip
    assert s["read"] == 4 and s["written"] == 3 and s["rejected_by_reason"] == {"bad_critique": 1}
    assert s["critic_written_by_split"] == {"train": 3}
