"""The Bradley-Terry reward model (``r1reward_verl.bt``) trained through verl's SFT trainer and FSDP engine on CPU
(torchrun, two gloo ranks), then scored everywhere a generative judge is: the evaluator, ``judge.rank``, the
pairwise reward manager's group scoring.

One training run (module fixture): the miniature's base model on its synthetic pairs (``preprocess.pairs
--bt-out``). What would fail if the code were wrong: the loss at step 1 is exactly ln 2 (the head starts at zero),
then falls; a flipped sign in the loss or a chosen/rejected swap in the collator would drive the held-out
accuracy below 50 %; a head that ignores the image scores at most 50 % on pairs that differ only by their image.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(900)

# 100 steps at 5e-4: in 5 runs (benchmarks/bt_schedule.py, RESULTS.md) held-out accuracy 1.0 and the right colour
# first among four on 19-20 of 20 items; at 1e-3, 0.925-1.0 and 13-20 of 20
STEPS, BATCH, LR = 100, 16, 5e-4


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from r1reward_verl.cpu.bt import run_bt
    from r1reward_verl.data.pairs import main as pairs_main
    from r1reward_verl.demo.stages import build_base
    from r1reward_verl.demo.synth import write_dataset

    wd = tmp_path_factory.mktemp("bt")
    write_dataset(wd / "data", 1200, 200, 0, force=True)
    assert pairs_main(["--input", str(wd / "data" / "pairs.jsonl"), "--out", str(wd / "rl"), "--bt-out", str(wd / "bt"),
                       "--no-progress"]) == 0  # fmt: skip
    base = build_base(wd, 0)
    model = run_bt(base, wd / "bt", wd / "bt_model", wd / "ckpt", wd / "bt.log", steps=STEPS, lr=LR, batch=BATCH,
                   nproc=2, extra=["trainer.logger=[console,file]", "trainer.project_name=bt", "trainer.experiment_name=t"],
                   env={"VERL_FILE_LOGGER_ROOT": str(wd / "logs")})  # fmt: skip
    steps = {}
    for line in (wd / "logs" / "bt" / "t.jsonl").read_text().splitlines():
        rec = json.loads(line)
        steps.setdefault(rec["step"], {}).update(rec["data"])
    return wd, base, model, steps


def test_bt_out_writes_every_pair_as_chosen_and_rejected(trained):
    import pandas as pd

    wd = trained[0]
    summary = json.loads((wd / "rl" / "summary.json").read_text())
    bt = pd.concat([pd.read_parquet(wd / "bt" / f"{s}.parquet") for s in ("train", "val")])
    assert len(bt) == sum(summary["bt_written_by_split"].values()) == 1200
    src = {r["id"]: r for r in map(json.loads, (wd / "data" / "pairs.jsonl").read_text().splitlines())}
    for _, row in bt.head(50).iterrows():
        rec = src[row["id"]]
        good, bad = rec[f"response_{rec['preferred']}"], rec[f"response_{3 - rec['preferred']}"]
        assert [m["content"] for m in row["chosen_messages"]] == ["<image>" + rec["question"], good]
        assert [m["content"] for m in row["rejected_messages"]] == ["<image>" + rec["question"], bad]
        assert len(row["images"]) == 1 and row["images"][0]["bytes"] == (wd / "data" / rec["images"][0]).read_bytes()


def test_loss_starts_at_ln2_and_falls_through_verl(trained):
    *_, steps = trained
    assert sorted(steps) == list(range(1, STEPS + 1))
    first = steps[1]
    assert first["train/loss"] == pytest.approx(math.log(2), abs=1e-6)  # the zero-initialised last layer
    assert first["bt/margin"] == 0.0 and first["bt/accuracy"] == 0.0  # a tie is not right
    late = [steps[s] for s in range(STEPS - 9, STEPS + 1)]
    # from ln 2 = 0.693 (training accuracy of the last 10 steps 0.994-1.0 in 5 runs)
    assert sum(m["train/loss"] for m in late) / 10 < 0.25
    assert sum(m["bt/accuracy"] for m in late) / 10 > 0.9
    for m in late:  # the metrics are per pair over both ranks: accuracy is a multiple of 1/BATCH
        assert abs(m["bt/accuracy"] * BATCH - round(m["bt/accuracy"] * BATCH)) < 1e-9
        assert m["bt/margin"] == pytest.approx(m["bt/reward_chosen"] - m["bt/reward_rejected"], abs=1e-4)


def test_export_is_an_hf_reward_model_with_the_head(trained):
    import torch
    from transformers import AutoModelForTokenClassification

    import r1reward_verl.bt.model  # noqa: F401
    from r1reward_verl.bt.score import is_scalar_model

    _, base, model, _ = trained
    assert is_scalar_model(model) and not is_scalar_model(base)
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["architectures"] == ["R1RQwen2_5_VLForTokenClassification"] and cfg["bt_head_hidden"] == 1024
    m, info = AutoModelForTokenClassification.from_pretrained(model, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert float(m.score[2].weight.abs().sum()) > 0  # trained, not re-initialised
    # the base's backbone loads into the class with only the head new
    m0, info0 = AutoModelForTokenClassification.from_pretrained(base, output_loading_info=True)
    assert set(info0["missing_keys"]) == {"score.0.weight", "score.0.bias", "score.2.weight", "score.2.bias"}
    assert torch.count_nonzero(m0.score[2].weight) == 0


def test_qwen_checkpoint_names_load_the_backbone(trained):
    """Qwen2.5-VL checkpoints (the Hub's, and what transformers 5 saves) name weights ``model.layers.*``/``visual.*``;
    the class's backbone is ``model.language_model.*``/``model.visual.*``. The conversion registered for the class maps
    them; without it the backbone is not found, and loading still 'succeeds' with random weights."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForTokenClassification
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping, register_checkpoint_conversion_mapping

    from r1reward_verl.bt.model import ARCHITECTURE

    base = trained[1]
    state = load_file(base / "model.safetensors")
    assert any(k.startswith("model.layers.") for k in state) and any(k.startswith("visual.") for k in state)
    m = AutoModelForTokenClassification.from_pretrained(base)
    key = next(k for k in state if k.startswith("model.layers.0.") and k.endswith("q_proj.weight"))
    assert torch.equal(m.state_dict()[key.replace("model.", "model.language_model.", 1)], state[key])
    saved = get_checkpoint_conversion_mapping(ARCHITECTURE)
    register_checkpoint_conversion_mapping(ARCHITECTURE, [], overwrite=True)
    try:
        _, info = AutoModelForTokenClassification.from_pretrained(base, output_loading_info=True)
    finally:
        register_checkpoint_conversion_mapping(ARCHITECTURE, saved, overwrite=True)
    lm = {k for k in m.state_dict() if k.startswith("model.language_model.")}
    assert len(lm) > 20 and lm <= set(info["missing_keys"])  # the language model, random: what the registration prevents


def test_inference_reads_the_tokens_training_read(trained):
    """The scorer's chat template and images give the exact input_ids and pixels verl's dataset gave the trainer."""
    import pandas as pd
    import torch
    from omegaconf import OmegaConf
    from transformers import AutoProcessor

    from r1reward_verl.bt.dataset import BTPairDataset
    from r1reward_verl.bt.score import _pil, conversation

    wd, base, _, _ = trained
    proc = AutoProcessor.from_pretrained(base)
    cfg = OmegaConf.create({"max_length": 512, "truncation": "error", "pad_mode": "no_padding", "image_key": "images",
                            "chosen_key": "chosen_messages", "rejected_key": "rejected_messages"})  # fmt: skip
    ds = BTPairDataset(str(wd / "bt" / "val.parquet"), proc.tokenizer, cfg, processor=proc)
    row = pd.read_parquet(wd / "bt" / "val.parquet").iloc[0]
    item = ds[0]
    assert item["chosen"]["loss_mask"].tolist() == [0] * (len(item["chosen"]["input_ids"]) - 1) + [1]
    for role in ("chosen", "rejected"):
        msgs = row[f"{role}_messages"]
        text = proc.apply_chat_template(conversation(msgs[0]["content"].replace("<image>", ""), msgs[1]["content"], 1),
                                        tokenize=False)  # fmt: skip
        enc = proc(text=[text], images=[_pil(row["images"][0])], return_tensors="pt")
        assert enc["input_ids"][0].tolist() == item[role]["input_ids"].tolist()
        assert torch.equal(enc["pixel_values"], item[role]["multi_modal_inputs"]["pixel_values"])


def test_the_head_reads_the_image(trained):
    """On pairs that differ only by their image a text-only scorer is right on at most one of each two; the trained
    model is right on most, and the same model shown one blank image for all is back at <= 50 %."""
    from PIL import Image

    from r1reward_verl.bt.score import ScalarRewardModel
    from tests.support.heldout import mirrored_pairs, pair_accuracy

    wd, _, model, _ = trained
    pairs = mirrored_pairs(wd / "data" / "heldout")
    assert len(pairs) >= 40
    scorer = ScalarRewardModel(model)
    blank = Image.new("RGB", (56, 56), (200, 200, 200))
    with_image = pair_accuracy(scorer, pairs)
    blind = pair_accuracy(scorer, pairs, lambda p: blank)
    assert blind <= 0.5
    assert with_image >= 0.9, with_image  # 1.0 in 5 runs


def test_eval_scores_a_scalar_model_each_response_alone(trained, tmp_path, capsys):
    from r1reward_verl.eval.__main__ import main as eval_main
    from r1reward_verl.eval.runner import read_items

    wd, base, model, _ = trained
    heldout = wd / "data" / "heldout"
    args = ["run", "--model", str(model), "--bench", f"vl_rewardbench={heldout / 'vl_rewardbench.jsonl'}",
            "--media-root", f"vl_rewardbench={heldout}", "--out", str(tmp_path / "ev"), "--swap", "--no-progress"]
    assert eval_main(args) == 0  # the default --backend vllm: recognised as a scalar model
    records = read_items(tmp_path / "ev" / "items.jsonl")
    assert len(records) == 200
    for r in records:  # the other order is the same two scores, swapped: order-invariant by construction
        assert r["swapped"]["scores"] == r["scores"][::-1] and r["outputs"] == []
        right = r["preds"][0] == r["label"]
        assert right == (r["swapped"]["preds"][0] == r["swapped"]["label"])
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())["vl_rewardbench"]
    acc = sum(r["preds"][0] == r["label"] for r in records) / len(records)
    assert acc >= 0.9  # 1.0 in 5 runs
    assert json.dumps(metrics).count(f"{100 * acc:.2f}") or metrics  # the table is the records' accuracy
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        eval_main(args[:-2] + ["--k", "3", "--no-progress"])
    assert e.value.code == 2 and "--k must be 0" in capsys.readouterr().err
    bad = ["run", "--model", str(base), "--backend", "scalar", *args[3:]]
    assert eval_main(bad) == 2
    assert "not a scalar reward model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # critic-then-score wants a scalar scorer
        eval_main(["run", "--model", str(base), "--critic", str(base), "--backend", "transformers", *args[3:]])
    assert e.value.code == 2 and "--critic needs a scalar reward model" in capsys.readouterr().err


def test_rank_and_the_group_manager_take_a_scalar_judge(trained, tmp_path):
    """``judge.rank`` and the pairwise reward manager's group scoring with the BT model: one call per candidate,
    P(a beats b) = σ(r_a − r_b), the right colour ranked first (among four: a quarter by chance) on most held-out
    easy items (19-20 of 20 in 5 runs of this module's training)."""
    from r1reward_verl.bt.score import ScalarRewardModel
    from r1reward_verl.judge.core import expected_calls, rank_group
    from r1reward_verl.judge.reward_fn import judge_from_kwargs
    from tests.support.heldout import colour_candidates

    wd, _, model, _ = trained
    meta = {r["id"]: r for r in map(json.loads, (wd / "data" / "heldout" / "pairs.jsonl").read_text().splitlines())}
    easy = [r for r in meta.values() if r["meta"]["difficulty"] == "easy"][:20]
    judge = judge_from_kwargs(None, None, {"judge": "scalar", "judge_model": str(model)})
    scorer = ScalarRewardModel(model)
    right = 0
    for rec in easy:
        image = (wd / "data" / "heldout" / rec["images"][0]).read_bytes()
        colour = rec["meta"]["colour"]
        cands = colour_candidates(colour)
        res = asyncio.run(rank_group(judge, rec["question"], [image], cands, mode="round_robin"))
        r = scorer.score([(rec["question"], [image], c) for c in cands])
        assert res.stats.calls == len(cands) < expected_calls(len(cands), "round_robin")
        n = len(cands)
        for i in range(n):
            want = sum(1 / (1 + math.exp(-(r[i] - r[j]))) for j in range(n) if j != i) / (n - 1)
            assert res.scores[i] == pytest.approx(want, abs=1e-4)
        right += cands[res.ranking[0]] == f"The shape is {colour}."
    assert right >= 14, right

    inp = tmp_path / "in.jsonl"
    (wd / "img.png").write_bytes(image)
    inp.write_text(json.dumps({"id": "q1", "question": rec["question"], "images": [str(wd / "img.png")],
                               "candidates": cands}) + "\n")  # fmt: skip
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, "-m", "r1reward_verl.judge.rank", "--input", str(inp), "--out", str(out),
                           "--backend", "transformers", "--model", str(model)], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads(out.read_text().splitlines()[0])
    assert row["ranking"] == res.ranking and row["judge_calls"] == n


def test_a_scalar_model_rewards_a_verl_run_through_the_reward_loop(trained, tmp_path, monkeypatch):
    """``genrm_policy judge=scalar``: verl's ``RewardLoopWorker`` with the composed config -> the ``pairwise_group``
    manager -> the BT model in the worker, shown the policy prompt's image: one call per rollout, each rollout's
    reward its mean σ(r_i − r_j) over the others, the empty answer not judged."""
    from r1reward_verl.bt.score import ScalarRewardModel
    from r1reward_verl.config import compose_config
    from tests.support.reward_loop import policy_items, run_worker

    _, base, model, _ = trained
    for k, v in {"R1R_POLICY_DATA": "/nonexistent/policy_qa", "R1R_JUDGE_PATH": str(model)}.items():
        monkeypatch.setenv(k, v)
    answers = ["The shape is red.", "The shape is blue.", "The shape is green.", ""]
    row, items = policy_items(base, tmp_path, answers)
    config = compose_config("genrm_policy", ["judge=scalar", f"actor_rollout_ref.model.path={base}",
                                             "actor_rollout_ref.rollout.n=4"])  # fmt: skip
    outs = run_worker(config, None, items)
    scores = [o["reward_score"] for o in outs]
    from r1reward_verl.judge.group_manager import prompt_parts

    question = row["extra_info"]["question"]
    _, images = prompt_parts(row["raw_prompt"])
    r = ScalarRewardModel(model).score([(question, images, a) for a in answers[:3]])
    want = [sum(1 / (1 + math.exp(-(r[i] - r[j]))) for j in range(3) if j != i) / 2 for i in range(3)]
    assert scores[:3] == pytest.approx(want, abs=1e-4) and scores[3] == 0.0
    assert len(images) == 1 and outs[0]["reward_extra_info"]["pairwise_calls"] == 3
