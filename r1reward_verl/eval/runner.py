"""Run a generative reward model over benchmark pairs and write every output of an evaluation.

Output directory:
  items.partial.jsonl, run.json   finished chunks and the run's settings (for resuming)
  items.jsonl     one record per pair: benchmark, id, key, category, group, label, preds (1/2/null,
                  greedy first when ``greedy``), outputs (raw), swapped {label, preds, outputs}
  metrics.json    ``compute_metrics`` of the records (+ ``_run``: inputs with sha256, counts, tokens)
  table.md        the paper-shaped tables
  accuracy_vs_k*.png  vote / any accuracy against k (when samples were drawn)
"""

from __future__ import annotations

import io
import json
import random
import time
from pathlib import Path
from typing import Optional

from r1reward_verl.eval.backends import Backend, Request
from r1reward_verl.eval.loaders import EvalPair, load_benchmark
from r1reward_verl.eval.metrics import compute_metrics
from r1reward_verl.eval.report import markdown_table, plot_accuracy_vs_k
from r1reward_verl.prompt import build_table1_prompt
from r1reward_verl.reward.parse import parse_output


def chosen_first(pair: EvalPair, seed: int) -> bool:
    """The seeded presentation order of a pair (never always "chosen" first)."""
    return random.Random(f"{seed}:{pair.benchmark}:{pair.key}").random() < 0.5


def build_request(pair: EvalPair, first_is_chosen: bool, *, greedy: bool, n: int) -> Request:
    """The Table 1 prompt (the same text training uses), images then text, as verl's RLHFDataset lays it out."""
    from PIL import Image

    r1, r2 = (pair.chosen, pair.rejected) if first_is_chosen else (pair.rejected, pair.chosen)
    images = [Image.open(x if isinstance(x, str) else io.BytesIO(x)).convert("RGB") for x in pair.images]
    video = [Image.open(f).convert("RGB") for f in pair.video] if pair.video else None
    content = [{"type": "image"} for _ in images] + ([{"type": "video"}] if video else [])
    # the same function writes the training data (there with <image> placeholders that verl's RLHFDataset
    # turns into image items before this text, as here)
    content.append({"type": "text", "text": build_table1_prompt(pair.question, r1, r2, num_images=0)})
    return Request([{"role": "user", "content": content}], images, video, greedy=greedy, n=n)


def _preds(result) -> tuple[list, list[str]]:
    outputs = ([result.greedy] if result.greedy is not None else []) + list(result.samples)
    return [parse_output(o).pred for o in outputs], outputs


def _record(p: EvalPair, first_is_chosen: bool, greedy: bool, result, swapped_result=None) -> dict:
    preds, outputs = _preds(result)
    rec = {"benchmark": p.benchmark, "id": p.id, "key": p.key, "category": p.category, "group": p.group,
           "label": 1 if first_is_chosen else 2, "greedy": greedy, "preds": preds, "outputs": outputs,
           "video_frames": len(p.video) if p.video else 0}  # fmt: skip
    if swapped_result is not None:
        s_preds, s_outputs = _preds(swapped_result)
        rec["swapped"] = {"label": 2 if first_is_chosen else 1, "preds": s_preds, "outputs": s_outputs}
    return rec


def evaluate(benchmarks: dict[str, str], backend: Backend, out_dir: str | Path, *, k: int = 0, ks: Optional[list[int]] = None,
             greedy: bool = True, swap: bool = True, seed: int = 0, media_roots: Optional[dict[str, str]] = None,
             limit: Optional[int] = None, skip_invalid: bool = False, max_frames: int = 32, model_name: str = "model",
             progress: bool = True, chunk_pairs: int = 256, resume: bool = True) -> dict:  # fmt: skip
    """Evaluate ``backend`` on ``{benchmark: file}``; ``k`` samples per prompt (one request with n = k),
    greedy too unless ``greedy=False``; ``swap`` also asks every pair in the other order.

    Pairs go to the backend ``chunk_pairs`` at a time (images are decoded per chunk, so memory does
    not grow with the benchmark); each finished chunk is appended to ``items.partial.jsonl``, and a
    rerun with the same settings into the same ``out_dir`` continues after the last finished chunk
    (``resume=False`` starts over). A different run in that directory is refused, never mixed in.
    """
    if not greedy and not k:
        raise ValueError("nothing to do: greedy=False and k=0")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    media_roots = media_roots or {}
    pairs, inputs = [], {}
    for bench, path in benchmarks.items():
        loaded = load_benchmark(bench, path, media_roots.get(bench), skip_invalid=skip_invalid, max_frames=max_frames)
        chosen = loaded.pairs[:limit] if limit else loaded.pairs
        inputs[bench] = {"file": str(path), **loaded.summary(), "evaluated": len(chosen),
                         "video_pairs": sum(p.video is not None for p in chosen)}  # fmt: skip
        pairs += chosen
    signature = {"model": model_name, "k": k, "greedy": greedy, "swap": swap, "seed": seed, "max_frames": max_frames,
                 "inputs": {b: (v["sha256"], v["evaluated"]) for b, v in inputs.items()}}  # fmt: skip
    partial, sig_file = out_dir / "items.partial.jsonl", out_dir / "run.json"
    done: dict[tuple[str, str], dict] = {}
    if resume and partial.exists():
        if not sig_file.exists() or json.loads(sig_file.read_text()) != json.loads(json.dumps(signature)):
            raise ValueError(f"{out_dir} holds results of a different run (see {sig_file}); use another --out "
                             "or start over with resume=False (--no-resume)")  # fmt: skip
        done = {(r["benchmark"], r["key"]): r for r in read_items(partial)}
    else:
        partial.unlink(missing_ok=True)
        sig_file.write_text(json.dumps(signature, indent=1) + "\n")
    todo = [p for p in pairs if (p.benchmark, p.key) not in done]
    t0, tokens, n_requests = time.perf_counter(), 0, 0
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
                rec = _record(p, o, greedy, results[i], results[len(chunk) + i] if swap else None)
                done[(p.benchmark, p.key)] = rec
                sink.write(json.dumps(rec, ensure_ascii=False) + "\n")
            sink.flush()
            if progress:
                print(f"evaluated {start + len(chunk)}/{len(todo)} pairs", flush=True)
    records = [done[(p.benchmark, p.key)] for p in pairs]  # input order, whatever the chunks did
    write_items(records, out_dir / "items.jsonl")
    run_info = {**signature, "inputs": inputs, "resumed_pairs": len(pairs) - len(todo), "requests": n_requests,
                "prompt_tokens_processed": tokens, "failed_requests": getattr(backend, "failed_requests", 0),
                "seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip
    return score(records, out_dir, ks=ks, run_info=run_info, model_name=model_name)


def write_items(records: list[dict], path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.replace(path)


def read_items(path: str | Path) -> list[dict]:
    records = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {i}: bad JSON: {e}") from None
            missing = {"benchmark", "id", "category", "group", "label", "preds"} - set(rec)
            if missing:
                raise ValueError(f"{path}: line {i}: missing {sorted(missing)}")
            records.append(rec)
    return records


def score(records: list[dict], out_dir: str | Path, *, ks: Optional[list[int]] = None, run_info: Optional[dict] = None,
          model_name: str = "model") -> dict:  # fmt: skip
    """metrics.json, table.md and the plots from the records alone (``python -m r1reward_verl.eval score``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = compute_metrics(records, ks)
    doc = {**metrics, **({"_run": run_info} if run_info else {})}
    (out_dir / "metrics.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out_dir / "table.md").write_text(markdown_table(metrics, model_name) + "\n")
    plot_accuracy_vs_k(metrics, out_dir)
    return doc
