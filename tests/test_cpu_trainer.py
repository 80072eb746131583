"""verl's own trainer (``python -m verl.trainer.main_ppo``) runs the paper configuration on CPU.

``hydra_configs/r1reward_cpu.yaml``: StableReinforce estimator and loss, the R1-Reward reward with the
consistency referee hosted by verl's RewardModelManager on its own pool, the r1reward_sync trainer; the
tiny Qwen2.5-VL after a cold start made here by verl's SFT trainer (``r1reward_verl.cpu.prepare``), the
bundled sample pairs with images, vLLM-CPU rollouts with the actor's weights synced in every step.

Each run is a subprocess in its own session; whatever it started (Ray, vLLM, workers) is killed by that
session id when it ends, also on failure or time-out. ``cpu_dir`` (the cold start) is made once per session
(tests/conftest.py); these tests write their logs and checkpoints into it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from r1reward_verl.config import CONFIG_DIR, REPO_ROOT
from r1reward_verl.procs import run_in_session
from tests.support.main_ppo import read_metrics

pytestmark = pytest.mark.timeout(1800)

RUN_TIMEOUT = 900


def main_ppo(cpu_dir: Path, log_root: Path, *overrides: str, multirun: bool = False,
             config: str = "r1reward_cpu") -> tuple[int, str]:  # fmt: skip
    """The README's command (from the repo root), with R1R_CPU_DIR pointing at this test's prepared dir.
    verl's file logger writes R1R_CPU_DIR/logs/r1reward_cpu/<experiment>.jsonl (the config says so)."""
    log_root.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "verl.trainer.main_ppo", "--config-path", str(CONFIG_DIR),
           "--config-name", config, *(["-m"] if multirun else []), *overrides,
           f"hydra.run.dir={log_root}/hydra", f"hydra.sweep.dir={log_root}/hydra_multirun"]  # fmt: skip
    env = dict(os.environ, R1R_CPU_DIR=str(cpu_dir), RAY_DEDUP_LOGS="0")
    log = log_root / "main_ppo.log"
    rc = run_in_session(cmd, log, env=env, cwd=REPO_ROOT, timeout=RUN_TIMEOUT)  # also kills what survives it
    return rc, log.read_text(errors="replace")


def test_paper_config_trains_validates_checkpoints_and_resumes(cpu_dir, tmp_path):
    rc, log = main_ppo(cpu_dir, tmp_path / "run1")
    assert rc == 0, log[-6000:]
    logs = cpu_dir / "logs" / "r1reward_cpu"
    assert [p.name for p in logs.glob("*.jsonl")] == ["r1reward-paper-none-fsdp.jsonl"]
    steps = read_metrics(logs / "r1reward-paper-none-fsdp.jsonl")
    assert list((cpu_dir / "tensorboard" / "r1reward-paper-none-fsdp").glob("events.out.tfevents.*"))
    assert sorted(steps) == [1, 2, 3], sorted(steps)
    for n, m in steps.items():
        for key in ("adv_filter/filtered_frac", "adv_filter/z_max", "actor/preclip_frac", "actor/pg_loss",
                    "reward/format_mean", "reward/result_mean", "reward/consistency_mean", "referee/asked",
                    "reward/tail_wait_s", "reward/overlap_frac", "timing_s/step"):  # fmt: skip
            assert key in m, (n, key, sorted(m))
    asked = sum(m["referee/asked"] for m in steps.values())
    assert asked > 0, "the cold-started policy writes answers, so the referee must be asked"
    for m in steps.values():
        if m["referee/asked"]:
            assert m["referee/failed_frac"] == 0, m  # the hosted referee answers (it is awake)
    assert any(m["reward/format_mean"] > 0 for m in steps.values())
    # the actor's weights reached vLLM: its log-probs match the actor's
    assert all(m["training/rollout_probs_diff_mean"] < 0.05 for m in steps.values())
    # validation at step 3 (test_freq)
    assert any(k.startswith("val-core/") or k.startswith("val-aux/") for k in steps[3]), sorted(steps[3])
    # checkpoint at step 3, saved like verl's sync trainer saves: no TransferQueue state
    ckpt = cpu_dir / "checkpoints" / "r1reward-paper-none-fsdp"
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text().strip() == "3"
    step3 = ckpt / "global_step_3"
    assert (step3 / "actor").is_dir() and (step3 / "data.pt").is_file()
    assert not (step3 / "transfer_queue").exists()

    # resume: one more step continues at step 4 from the checkpoint
    rc, log = main_ppo(cpu_dir, tmp_path / "run2", "trainer.total_training_steps=4", "trainer.test_freq=-1",
                       "trainer.save_freq=-1")  # fmt: skip
    assert rc == 0, log[-6000:]
    assert "global_step_3" in log  # verl reports what it loaded
    resumed = read_metrics(logs / "r1reward-paper-none-fsdp.jsonl")  # verl's file logger starts the file anew
    assert sorted(resumed) == [4], sorted(resumed)


def test_ablation_sweep_runs_every_member_in_turn(cpu_dir, tmp_path):
    members = ["no_adv_filter", "no_preclip", "reinforce_pp", "no_consistency"]
    rc, log = main_ppo(cpu_dir, tmp_path, f"ablation={','.join(members)}", "trainer.total_training_steps=1",
                       "trainer.test_freq=-1", "trainer.save_freq=-1", "trainer.resume_mode=disable",
                       multirun=True)  # fmt: skip
    assert rc == 0, log[-6000:]
    for member in members:
        path = cpu_dir / "logs" / "r1reward_cpu" / f"r1reward-paper-{member}-fsdp.jsonl"
        steps = read_metrics(path)
        assert sorted(steps) == [1], (member, sorted(steps))
        m = steps[1]
        assert "actor/pg_loss" in m and m["actor/pg_loss"] == m["actor/pg_loss"], (member, m)  # ran, not NaN
        if member == "no_consistency":
            assert m.get("referee/asked", 0) == 0


# The pairwise run's models are made of weights, so every reward is known in advance from the rollouts' text:
# the policy answers one word of WORDS (uniformly sampled, then <|im_end|>), the judge (tests/pairwise_judges
# .build_scoring_judge_model) prefers the word that scores higher, in either order. Scores 0.1 apart (all 56
# ordered pairs of these words, shown as the one-token " word" a rollout decodes to, are read right by the judge).
WORDS = {"worse": -0.3, "cat": -0.2, "red": -0.1, "image": 0.0, "chart": 0.1, "dog": 0.2, "reasoning": 0.3, "correct": 0.4}


def build_word_policy_model(out: Path, words, logit: float = 3.0) -> Path:
    """A tiny Qwen2.5-VL (head size 32: vLLM-CPU) whose weights are a policy that answers one word: after the
    generation prompt's last token (``\\n``) one of ``words`` as the one token ``" word"`` (all equally likely: at
    temperature 1 a uniform draw), then ``<|im_end|>``. Attention, MLPs and the vision merger's output are zeroed
    (their gradients stay 0, so training moves only the embeddings, norms and head: by ~lr a step against logit
    margins of 8 x ``logit`` = 24); ``\\n`` embeds to dim 0, each word to dim 1; the head's rows of the words read
    dim 0, that of ``<|im_end|>`` dim 1 (the final norm scales a one-hot to 8)."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from r1reward_verl.tiny import VLLM_CPU_HEAD_DIM, build_tiny_qwen25vl
    from tests.support.judges import save_hand_set_weights

    out = Path(build_tiny_qwen25vl(out, head_dim=VLLM_CPU_HEAD_DIM))
    tok = AutoTokenizer.from_pretrained(str(out))
    (weights,) = out.glob("*.safetensors")
    sd = load_file(str(weights))

    def one(text):
        ids = tok.encode(text)
        assert len(ids) == 1, f"{text!r} is not one token: {ids}"
        return ids[0]

    new = {k: torch.zeros_like(v) if k.startswith("model.") and not k.endswith("layernorm.weight")
           and k != "model.norm.weight" else v for k, v in sd.items()}  # fmt: skip
    emb = new["model.embed_tokens.weight"]
    head = torch.zeros(emb.shape)
    emb[one("\n"), 0] = 1.0
    for w in words:
        t = one(" " + w)
        emb[t, 1], head[t, 0] = 1.0, logit
    head[tok.eos_token_id, 1] = logit
    new["lm_head.weight"] = head
    return save_hand_set_weights(out, weights, new)


def round_robin_win_rates(words: list[str]) -> list[float]:
    """Each rollout's share of its comparisons won under WORDS (both orders: a win 1, a loss 0; the same word twice:
    the same prompt in both orders, so whichever position the judge picks, each wins one order: 1/2)."""
    n = len(words)
    return [sum(1.0 if WORDS[a] > WORDS[b] else 0.5 if a == b else 0.0 for j, b in enumerate(words) if j != i) / (n - 1)
            for i, a in enumerate(words)]  # fmt: skip


def test_policy_rewarded_by_the_pairwise_judge_hosted_by_verl(tmp_path):
    """``genrm_policy_cpu.yaml``: a tiny policy on ``preprocess.policy_qa`` (with images), GRPO n = 4, rewarded by a
    pairwise judge hosted by verl's reward loop (vLLM-CPU on its own pool), through the ``pairwise_group`` reward
    manager: each step's 2 prompts x 4 rollouts are judged as 2 groups of n(n-1) = 12 calls.

    Both models are made of weights (see ``WORDS``): each rollout is one word and the judge's verdict on every pair
    is known, so each rollout's reward in verl's rollout dump (``trainer.rollout_data_dir``) must be its round-robin
    win rate in its group, computed here from the dumped words. A flipped winner, an order swapped and not swapped
    back (every comparison 1/2), a score given to another rollout of the group or of another group, a dropped or
    doubled comparison: the rewards differ."""
    import json

    from r1reward_verl.demo.policy_qa import write
    from r1reward_verl.tiny import VLLM_CPU_HEAD_DIM
    from tests.support.judges import build_scoring_judge_model

    run_dir = tmp_path / "cpu"  # R1R_CPU_DIR: data and logs; both models are given by path
    write(run_dir / "policy_qa", n_train=16, n_val=2, seed=0)
    policy = build_word_policy_model(tmp_path / "word-policy", WORDS)
    judge = build_scoring_judge_model(tmp_path / "scoring-judge", WORDS, head_dim=VLLM_CPU_HEAD_DIM)
    dump = tmp_path / "rollouts"
    rc, log = main_ppo(run_dir, tmp_path / "genrm", f"actor_rollout_ref.model.path={policy}",
                       f"reward.reward_model.model_path={judge}", f"trainer.rollout_data_dir={dump}",
                       config="genrm_policy_cpu")  # fmt: skip
    assert rc == 0, log[-6000:]
    steps = read_metrics(run_dir / "logs" / "genrm_policy_cpu" / "group-hosted.jsonl")
    assert sorted(steps) == [1, 2], sorted(steps)
    assert sorted(p.name for p in dump.glob("*.jsonl")) == ["1.jsonl", "2.jsonl"]
    some_ranked = False
    for n, m in steps.items():
        assert m["genrm/calls"] == 2 * 4 * 3, m  # 2 groups x n(n-1), both orders
        assert m["genrm/failed_calls"] == 0 and m["genrm/partial_rollouts"] == 0, m  # the hosted judge answers, groups fill
        assert m["genrm/unparsable_frac"] == 0, m  # the scoring judge always answers in the strict format
        assert m["genrm/score_mean"] == pytest.approx(0.5), m  # win rates of a group sum to n/2

        rows = [json.loads(line) for line in (dump / f"{n}.jsonl").read_text().splitlines()]
        groups: dict[str, list[dict]] = {}
        for r in rows:  # verl's key {uid}_{session}_{i}: uid = the prompt's group
            groups.setdefault(r["uid"].rsplit("_", 2)[0], []).append(r)
        assert sorted(map(len, groups.values())) == [4, 4], {u: len(g) for u, g in groups.items()}
        agree = 0
        for uid, group in groups.items():
            assert len({r["input"] for r in group}) == 1, group  # one prompt
            words = [r["output"].strip() for r in group]
            assert all(r["output"] == " " + w and w in WORDS for r, w in zip(group, words)), words  # the policy's answers
            want = round_robin_win_rates(words)
            got = [r["score"] for r in group]
            assert got == pytest.approx(want, abs=1e-6), (n, uid, words, got, want)
            some_ranked |= len(set(want)) > 1
            agree += sum(a != b for i, a in enumerate(words) for b in words[i + 1 :])
        # a comparison of two different words: both orders pick the better one; of the same word: one order each
        assert m["genrm/position_agreement"] == pytest.approx(agree / (2 * 6)), (m, agree)
    assert some_ranked, "every group drew one word 4 times: nothing was ranked"
