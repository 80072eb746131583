"""Run a generative reward model over benchmark pairs and write every output of an evaluation.

Output directory:
  items.partial.jsonl, run.json   finished pairs and the run's settings (for resuming)
  items.jsonl     one record per pair: benchmark, id, key, category, group, label, preds (1/2/null,
                  greedy first when ``greedy``), outputs (raw), swapped {label, preds, outputs}
  metrics.json    ``compute_metrics`` of the records (+ ``_run``: inputs with sha256, counts, tokens)
  table.md        the paper-shaped tables
  accuracy_vs_k*.png  vote / any accuracy against k (when samples were drawn)

A pair whose request failed at the backend (after its retries: ``Result.error``) is not finished: it
is not saved in ``items.partial.jsonl`` (a rerun asks for it again) and the run raises
:class:`FailedPairs` without writing any output, unless ``report_failed``: then the outputs are
written with those pairs marked ``failed`` (in no denominator, counted per benchmark). The outputs
are written to a staging folder and renamed into place together: a run that fails writes none of
them, and leaves an earlier run's outputs as they were.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Optional, Union

from r1reward_verl.eval.backends import Backend, Request
from r1reward_verl.eval.loaders import BadInput, EvalPair, load_benchmark
from r1reward_verl.eval.metrics import compute_metrics
from r1reward_verl.eval.report import markdown_table, plot_accuracy_vs_k
from r1reward_verl.prompt import build_table1_prompt
from r1reward_verl.resume import read_resumable
from r1reward_verl.reward.parse import parse_output


class FailedPairs(RuntimeError):
    """Pairs whose requests failed after the retries: not scored, not saved as finished (``eval run`` exits 1)."""

    def __init__(self, failed: int, total: int, errors: Counter, out_dir: Path, finished: int):
        kinds = ", ".join(f"{k} x{n}" for k, n in errors.most_common())
        super().__init__(f"{failed} of {total} pairs got no answer: their requests failed after the retries ({kinds}); "
                         f"nothing scored, no metrics.json / table.md written; rerun the same command to ask for "
                         f"them again ({finished} finished pairs are kept in {out_dir / 'items.partial.jsonl'}), "
                         "or add --report-failed to score the others with these counted apart")  # fmt: skip
        self.failed, self.total, self.errors = failed, total, errors


def chosen_first(pair: EvalPair, seed: int) -> bool:
    """The seeded presentation order of a pair (never always "chosen" first)."""
    return random.Random(f"{seed}:{pair.benchmark}:{pair.key}").random() < 0.5


def table1_request(question: str, response_1: str, response_2: str, images: list, video: Optional[list] = None, *,
                   greedy: bool, n: int) -> Request:  # fmt: skip
    """The Table 1 prompt (the same text training uses) as a backend request: images (paths or encoded bytes), then a
    video's frames, then the text, as verl's RLHFDataset lays it out."""
    from PIL import Image

    pil = [Image.open(x if isinstance(x, str) else io.BytesIO(x)).convert("RGB") for x in images]
    frames = [Image.open(f).convert("RGB") for f in video] if video else None
    content = [{"type": "image"} for _ in pil] + ([{"type": "video"}] if frames else [])
    # the same function writes the training data (there with <image> placeholders that verl's RLHFDataset
    # turns into image items before this text, as here)
    content.append({"type": "text", "text": build_table1_prompt(question, response_1, response_2, num_images=0)})
    return Request([{"role": "user", "content": content}], pil, frames, greedy=greedy, n=n,
                   texts=(question, response_1, response_2))


def build_request(pair: EvalPair, first_is_chosen: bool, *, greedy: bool, n: int) -> Request:
    """A benchmark pair in one order (:func:`table1_request`)."""
    r1, r2 = (pair.chosen, pair.rejected) if first_is_chosen else (pair.rejected, pair.chosen)
    return table1_request(pair.question, r1, r2, pair.images, pair.video, greedy=greedy, n=n)


def scalar_pred(scores: tuple[float, float]) -> Optional[int]:
    """A scalar reward model's verdict on a pair: the response with the higher reward; a tie is no verdict (wrong)."""
    s1, s2 = scores
    return 1 if s1 > s2 else 2 if s2 > s1 else None


def _preds(result) -> tuple[list, list[str]]:
    if getattr(result, "scores", None) is not None:
        return [scalar_pred(result.scores)], []
    outputs = ([result.greedy] if result.greedy is not None else []) + list(result.samples)
    return [parse_output(o).pred for o in outputs], outputs


def _record(p: EvalPair, first_is_chosen: bool, greedy: bool, result, swapped_result=None) -> dict:
    preds, outputs = _preds(result)
    rec = {"benchmark": p.benchmark, "id": p.id, "key": p.key, "category": p.category, "group": p.group,
           "label": 1 if first_is_chosen else 2, "greedy": greedy, "preds": preds, "outputs": outputs,
           "video_frames": len(p.video) if p.video else 0}  # fmt: skip
    if getattr(result, "scores", None) is not None:
        rec["scores"] = list(result.scores)
    if swapped_result is not None:
        s_preds, s_outputs = _preds(swapped_result)
        rec["swapped"] = {"label": 2 if first_is_chosen else 1, "preds": s_preds, "outputs": s_outputs}
        if getattr(swapped_result, "scores", None) is not None:
            rec["swapped"]["scores"] = list(swapped_result.scores)
    return rec


def evaluate(benchmarks: dict[str, str], backend: Union[Backend, Callable[[], Backend]], out_dir: str | Path, *,
             k: int = 0, ks: Optional[list[int]] = None, greedy: bool = True, swap: bool = True, seed: int = 0,
             media_roots: Optional[dict[str, str]] = None, limit: Optional[int] = None, skip_invalid: bool = False,
             max_frames: int = 32, model_name: str = "model", progress: bool = True, chunk_pairs: int = 256,
             resume: bool = True, report_failed: bool = False) -> dict:  # fmt: skip
    """Evaluate ``backend`` on ``{benchmark: file}``; ``k`` samples per prompt (one request with n = k),
    greedy too unless ``greedy=False``; ``swap`` also asks every pair in the other order. ``backend``
    may be a function making it: it is called once the inputs are read (a bad file stops first).

    Pairs go to the backend ``chunk_pairs`` at a time (images are decoded per chunk, so memory does
    not grow with the benchmark); each finished pair is appended to ``items.partial.jsonl`` as its
    chunk ends, and a rerun with the same settings into the same ``out_dir`` asks only for the pairs
    not finished (``resume=False`` starts over). A different run in that directory is refused, never
    mixed in. Failed requests: see the module docstring (``report_failed``).
    """
    if not greedy and not k:
        raise BadInput("nothing to do: no greedy output (--no-greedy) and no samples (--k 0)")
    if chunk_pairs < 1 or (limit is not None and limit < 1):
        raise BadInput(f"chunk_pairs and limit must be >= 1, got {chunk_pairs} and {limit}")
    out_dir = Path(out_dir)
    media_roots = media_roots or {}
    pairs, inputs = [], {}
    for bench, path in benchmarks.items():
        loaded = load_benchmark(bench, path, media_roots.get(bench), skip_invalid=skip_invalid, max_frames=max_frames)
        if not loaded.pairs:
            raise BadInput(f"{path}: no pair to evaluate: all {loaded.read} rows rejected {dict(loaded.rejected)}")
        chosen = loaded.pairs[:limit] if limit else loaded.pairs
        inputs[bench] = {"file": str(path), **loaded.summary(), "evaluated": len(chosen),
                         "video_pairs": sum(p.video is not None for p in chosen)}  # fmt: skip
        pairs += chosen
    out_dir.mkdir(parents=True, exist_ok=True)
    signature = {"model": model_name, "k": k, "greedy": greedy, "swap": swap, "seed": seed, "max_frames": max_frames,
                 "inputs": {b: (v["sha256"], v["evaluated"]) for b, v in inputs.items()}}  # fmt: skip
    partial, sig_file = out_dir / "items.partial.jsonl", out_dir / "run.json"
    done: dict[tuple[str, str], dict] = {}
    if resume and partial.exists():
        try:
            same = json.loads(sig_file.read_text()) == json.loads(json.dumps(signature))
        except (OSError, ValueError):
            same = False
        if not same:
            raise BadInput(f"{out_dir} holds results of a different run (see {sig_file}); use another --out "
                           "or start over with --no-resume (resume=False)")  # fmt: skip
        done = {(r["benchmark"], r["key"]): r for r in _read_partial(partial)}
    else:
        partial.unlink(missing_ok=True)
        sig_file.write_text(json.dumps(signature, indent=1) + "\n")
    todo = [p for p in pairs if (p.benchmark, p.key) not in done]
    if todo and not hasattr(backend, "run"):
        backend = backend()
    t0, tokens, n_requests, failed, errors = time.perf_counter(), 0, 0, {}, Counter()
    with open(partial, "a", encoding="utf-8") as sink:
        for start in range(0, len(todo), chunk_pairs):
            chunk = todo[start : start + chunk_pairs]
            orders = [chosen_first(p, seed) for p in chunk]
            requests = [build_request(p, o, greedy=greedy, n=k) for p, o in zip(chunk, orders)]
            if swap:
                requests += [build_request(p, not o, greedy=greedy, n=k) for p, o in zip(chunk, orders)]
            results = backend.run(requests, progress=progress)
            n_requests += len(requests)
            tokens += sum(r.prompt_tokens for r in results)
            for i, (p, o) in enumerate(zip(chunk, orders)):
                both = [results[i]] + ([results[len(chunk) + i]] if swap else [])
                rec = _record(p, o, greedy, *both)
                pair_errors = [r.error for r in both if getattr(r, "error", None)]
                if pair_errors:  # no answer is not a wrong answer: asked again by the next run
                    errors.update(pair_errors)
                    failed[(p.benchmark, p.key)] = {**rec, "failed": True, "error": pair_errors[0]}
                    continue
                done[(p.benchmark, p.key)] = rec
                sink.write(json.dumps(rec, ensure_ascii=False) + "\n")
            sink.flush()
            if progress:
                print(f"evaluated {start + len(chunk)}/{len(todo)} pairs", flush=True)
    if failed and not report_failed:
        raise FailedPairs(len(failed), len(pairs), errors, out_dir, len(done))
    records = [done.get((p.benchmark, p.key)) or failed[(p.benchmark, p.key)] for p in pairs]  # input order
    run_info = {**signature, "inputs": inputs, "resumed_pairs": len(pairs) - len(todo), "requests": n_requests,
                "prompt_tokens_processed": tokens, "failed_requests": getattr(backend, "failed_requests", 0),
                "failed_pairs": len(failed), "seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip
    return score(records, out_dir, ks=ks, run_info=run_info, model_name=model_name, write_records=True)


def _json_object(line: bytes) -> Optional[dict]:
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None


def _read_partial(path: Path) -> list[dict]:
    """The finished records of a run: the last line repaired by :func:`r1reward_verl.resume.read_resumable` (cut
    short by a crash: dropped and asked again), then read and checked by :func:`read_items`."""
    read_resumable(path, _json_object, "an item record (a JSON object)")
    return read_items(path, allow_empty=True)


def write_items(records: list[dict], path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.replace(path)


def _label(value, what: str, where: str) -> int:
    """1 or 2 from 1, 2, "1", "2" (a label another tool wrote as text is the same label)."""
    if not isinstance(value, bool) and value in (1, 2, "1", "2"):
        return int(value)
    raise BadInput(f"{where}: {what} must be 1 or 2, got {value!r}")


def _pred_list(value, what: str, where: str) -> list:
    if not isinstance(value, list):
        raise BadInput(f"{where}: {what} must be a list of 1, 2 or null, got {value!r:.60}")
    return [None if p is None else _label(p, f"{what} entry", where) for p in value]


def read_items(path: str | Path, allow_empty: bool = False) -> list[dict]:
    """Per-item records (``items.jsonl``), checked and normalised: labels and predictions 1 or 2 (``"2"`` is
    2; null for an unparsable prediction), a known benchmark and category. A bad line is a BadInput naming
    file and line."""
    from r1reward_verl.eval.loaders import BENCHMARKS, MMRB_CATEGORIES, MMRLHF_CATEGORIES, VL_CATEGORIES

    categories = dict(zip(BENCHMARKS, (VL_CATEGORIES, MMRB_CATEGORIES, MMRLHF_CATEGORIES)))
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: {'is a directory' if path.is_dir() else 'no such file'}")
    records, seen = [], set()
    with open(path, encoding="utf-8", errors="replace") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}: line {i}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise BadInput(f"{where}: bad JSON: {e}") from None
            if not isinstance(rec, dict):
                raise BadInput(f"{where}: a record must be an object, got {type(rec).__name__}")
            missing = {"benchmark", "id", "category", "group", "label", "preds"} - set(rec)
            if missing:
                raise BadInput(f"{where}: missing {sorted(missing)}")
            if rec["benchmark"] not in categories:
                raise BadInput(f"{where}: unknown benchmark {rec['benchmark']!r}; one of {', '.join(BENCHMARKS)}")
            if rec["category"] not in categories[rec["benchmark"]]:
                raise BadInput(f"{where}: category {rec['category']!r} is not one of {rec['benchmark']}'s "
                               f"{', '.join(categories[rec['benchmark']])}")  # fmt: skip
            rec["label"], rec["preds"] = _label(rec["label"], "label", where), _pred_list(rec["preds"], "preds", where)
            if not rec["preds"] and not rec.get("failed"):
                raise BadInput(f"{where}: preds is empty")
            if rec.get("swapped") is not None:
                sw = rec["swapped"]
                if not isinstance(sw, dict) or not {"label", "preds"} <= set(sw):
                    raise BadInput(f"{where}: swapped must be an object with label and preds")
                sw["label"], sw["preds"] = _label(sw["label"], "swapped.label", where), _pred_list(sw["preds"], "swapped.preds", where)
            if "key" in rec:  # the runner's records: one per pair
                if (rec["benchmark"], rec["key"]) in seen:
                    raise BadInput(f"{where}: item {rec['key']} of {rec['benchmark']} appears twice")
                seen.add((rec["benchmark"], rec["key"]))
            records.append(rec)
    if not records and not allow_empty:
        raise BadInput(f"{path}: no records")
    return records


def score(records: list[dict], out_dir: str | Path, *, ks: Optional[list[int]] = None, run_info: Optional[dict] = None,
          model_name: str = "model", write_records: bool = False) -> dict:  # fmt: skip
    """metrics.json, table.md and the plots from the records alone (``python -m r1reward_verl.eval score``),
    and items.jsonl with ``write_records``. All are made in a staging folder, then renamed into ``out_dir``
    (plots of an earlier run that this one does not make are removed): a failure leaves ``out_dir`` as it was."""
    out_dir = Path(out_dir)
    metrics = compute_metrics(records, ks)
    doc = {**metrics, **({"_run": run_info} if run_info else {})}
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = out_dir / f".staging-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        if write_records:
            write_items(records, stage / "items.jsonl")
        (stage / "metrics.json").write_text(json.dumps(doc, indent=2) + "\n")
        (stage / "table.md").write_text(markdown_table(metrics, model_name) + "\n")
        plots = {p.name for p in plot_accuracy_vs_k(metrics, stage)}
        for f in sorted(stage.iterdir()):
            f.replace(out_dir / f.name)
        for old in out_dir.glob("accuracy_vs_k*.png"):
            if old.name not in plots:
                old.unlink()
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return doc
