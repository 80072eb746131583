"""The main job on the embedded default: StableReinforce through verl's own call sites, on CPU, with the tiny model.

    python -m r1reward_verl.demo [--workdir runs/demo] [--steps 3]

verl's PPO trainer needs GPUs, so this runs the pieces of a training step that we plug into, in the
order the trainer runs them, with the tiny random Qwen2.5-VL (built on the fly, offline):

1. data: the bundled sample pairs (``preprocess/sample_data``, or ``--data``) through
   ``preprocess.pairs`` into verl parquet, read back by verl's ``create_rl_dataset`` (``RLHFDataset``)
   and sampler; compose ``hydra_configs/r1reward.yaml`` and pass verl's own config validation;
2. roll out: the tiny model samples responses to the Table 1 prompts with their images (HF ``generate``,
   after the chat template and processor, as verl's agent loop applies them to ``raw_prompt``);
   a random model never writes the answer format, so each prompt also gets two reference responses
   (one naming the preferred response, one the other), scored by the policy like its own samples;
3. score: the R1-Reward reward (``reward_fns/r1_reward.py``, the function verl's reward loop calls),
   with the reward kwargs of the composed config: the consistency referee is off unless an
   endpoint is given, e.g. ``referee=endpoint reward.custom_reward_function.reward_kwargs.referee_base_url=http://127.0.0.1:8012/v1``
   (``python -m r1reward_verl.servers tiny --model runs/demo/tiny-qwen25vl --port 8012`` serves one);
4. ``verl.trainer.ppo.ray_trainer.compute_advantage`` with ``algorithm.adv_estimator=stable_reinforce``;
5. ``verl.workers.utils.losses.ppo_loss`` with the actor config built by verl from our Hydra config
   (``loss_mode=stable_reinforce``), for ``ppo_epochs`` updates with an optimizer.

Every step prints verl's metrics plus ours (``adv_filter/*``, ``actor/preclip_frac``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import numpy as np
import torch


SAMPLE_PAIRS = Path(__file__).resolve().parent.parent / "preprocess" / "sample_data" / "pairs.jsonl"
PROMPTS_PER_STEP = 4


def _sequence_log_probs(model, input_ids, pixel_values, image_grid_thw):
    """Per-token log-probs of ``input_ids[1:]`` under ``model`` (left-shifted, last position 0), unpadded."""
    out = model(
        input_ids=input_ids[None],
        attention_mask=torch.ones_like(input_ids)[None],
        pixel_values=pixel_values,
        image_grid_thw=image_grid_thw,
    )
    logp = torch.log_softmax(out.logits[0, :-1].float(), dim=-1).gather(-1, input_ids[1:, None]).squeeze(-1)
    return torch.cat([logp, logp.new_zeros(1)])


def run_demo(workdir: str | Path = "runs/demo", steps: int = 3, samples: int = 4, max_new_tokens: int = 24, seed: int = 0,
             lr: float = 0.05, overrides: tuple[str, ...] = (), data: str | Path = SAMPLE_PAIRS) -> list[dict]:
    from tensordict import TensorDict
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration
    from verl import DataProto
    from verl.trainer.ppo.ray_trainer import compute_advantage
    from verl.trainer.ppo.utils import create_rl_dataset, create_rl_sampler
    from verl.utils import hf_processor
    from verl.utils import tensordict_utils as tu
    from verl.utils.config import omega_conf_to_dataclass
    from verl.workers.utils.losses import ppo_loss

    from preprocess.pairs import convert
    from r1reward_verl.algos import pop_advantage_filter_metrics
    from r1reward_verl.config import compose_config, validate_like_main_ppo
    from r1reward_verl.reward.metrics import reward_step_metrics
    from reward_fns.r1_reward import compute_score
    from r1reward_verl.tiny import build_tiny_qwen25vl

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "metrics.jsonl").unlink(missing_ok=True)
    model_dir = workdir / "tiny-qwen25vl"
    if not (model_dir / "config.json").exists():
        build_tiny_qwen25vl(model_dir, seed=seed)

    # 1. data: the pairs through preprocess.pairs into verl parquet
    summary = convert([str(data)], workdir / "data", val_fraction=0.1, seed=seed, progress=False)
    print(f"data: read {summary['read']} pairs -> {summary['written_by_split']} (labels {summary['labels_by_split']})")
    bsz = PROMPTS_PER_STEP * (samples + 2)
    config = compose_config(
        "r1reward",
        [
            f"actor_rollout_ref.model.path={model_dir}",
            f"data.train_files={workdir / 'data' / 'train.parquet'}",
            f"data.val_files={workdir / 'data' / 'val.parquet'}",
            f"data.train_batch_size={PROMPTS_PER_STEP}",
            "data.max_prompt_length=2048",
            f"data.seed={seed}",
            f"actor_rollout_ref.rollout.n={samples}",
            f"actor_rollout_ref.actor.ppo_mini_batch_size={PROMPTS_PER_STEP}",
            "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1",
            "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=1",
            "actor_rollout_ref.actor.ppo_epochs=2",
            "trainer.n_gpus_per_node=1",
            # no referee unless asked for: `referee=endpoint ...referee_base_url=http://...`
            "referee=off",
            *overrides,
        ],
    )
    validate_like_main_ppo(config)
    actor_cfg = omega_conf_to_dataclass(config.actor_rollout_ref.actor)
    reward_kwargs = dict(config.reward.custom_reward_function.get("reward_kwargs", {}))
    algo = config.algorithm

    processor = hf_processor(str(model_dir))
    assert processor is not None, "verl's hf_processor did not load the tiny model's processor"
    tokenizer = processor.tokenizer
    AutoProcessor.from_pretrained(model_dir)  # the plain HF path loads too
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    optim = torch.optim.AdamW(model.parameters(), lr=lr)

    # a random model can emit vision placeholders, which the re-scoring pass would read as images
    vision_ids = tokenizer.convert_tokens_to_ids(["<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
                                                   "<|image_pad|>", "<|video_pad|>"])
    # verl's dataset and sampler read the parquet, as the trainer's dataloader does
    dataset = create_rl_dataset(config.data.train_files, config.data, tokenizer, processor)
    order = list(create_rl_sampler(config.data, dataset))

    def encode(item):
        """What verl's agent loop does with raw_prompt: chat template, then the processor with the images."""
        messages = item["raw_prompt"]
        images = [c["image"] for m in messages if isinstance(m["content"], list) for c in m["content"]
                  if c.get("type") == "image"]  # fmt: skip
        chat = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return processor(text=[chat], images=images or None, return_tensors="pt")

    history = []
    for step in range(1, steps + 1):
        t0 = time.perf_counter()
        items = [dataset[order[((step - 1) * PROMPTS_PER_STEP + j) % len(order)]] for j in range(PROMPTS_PER_STEP)]
        prompts = [(encode(it), int(it["reward_model"]["ground_truth"]), it["extra_info"]["question"]) for it in items]
        # 2. rollout (temperature 1, as the paper)
        rows = []
        model.eval()
        with torch.no_grad():
            for p_idx, (enc, label, _) in enumerate(prompts):
                out = model.generate(**enc, do_sample=True, temperature=1.0, max_new_tokens=max_new_tokens,
                                     num_return_sequences=samples, pad_token_id=tokenizer.pad_token_id,
                                     suppress_tokens=vision_ids)
                for seq in out:
                    resp = seq[enc["input_ids"].shape[1]:]
                    eos = (resp == tokenizer.eos_token_id).nonzero()
                    resp = resp[: int(eos[0]) + 1] if len(eos) else resp
                    rows.append((p_idx, enc, resp, label))
                for choice in (label, 3 - label):  # off-policy references, as cold-start data would give
                    ref = f"<think>Response {choice} matches the image better.</think><answer>{choice}</answer>"
                    ref_ids = tokenizer(ref, return_tensors="pt")["input_ids"][0]
                    rows.append((p_idx, enc, torch.cat([ref_ids, torch.tensor([tokenizer.eos_token_id])]), label))
        # 3. reward: R1-Reward's compute_score, all rollouts concurrently as verl's reward loop runs them
        texts = tokenizer.batch_decode([r for _, _, r, _ in rows], skip_special_tokens=True)

        async def score_all():
            return await asyncio.gather(*[
                compute_score("r1reward_demo", text, str(label), {"question": prompts[p][2]}, **reward_kwargs)
                for (p, _, _, label), text in zip(rows, texts)
            ])

        reward_infos = asyncio.run(score_all())
        scores = [info["score"] for info in reward_infos]

        # old log-probs (the "compute_log_prob" pass)
        def all_log_probs():
            return [
                _sequence_log_probs(model, torch.cat([enc["input_ids"][0], resp]), enc["pixel_values"], enc["image_grid_thw"])
                for _, enc, resp, _ in rows
            ]

        with torch.no_grad():
            old_flat = all_log_probs()
        max_p = max(int(enc["input_ids"].shape[1]) for _, enc, _, _ in rows)
        max_r = max(int(resp.shape[0]) for _, _, resp, _ in rows)
        prompts_t = torch.zeros(bsz, max_p, dtype=torch.long)
        responses_t = torch.zeros(bsz, max_r, dtype=torch.long)
        attn = torch.zeros(bsz, max_p + max_r, dtype=torch.long)
        response_mask = torch.zeros(bsz, max_r)
        old_log_probs = torch.zeros(bsz, max_r)
        token_level_rewards = torch.zeros(bsz, max_r)
        for i, (_, enc, resp, _) in enumerate(rows):
            p, r = int(enc["input_ids"].shape[1]), int(resp.shape[0])
            prompts_t[i, max_p - p:] = enc["input_ids"][0]
            attn[i, max_p - p: max_p + r] = 1
            responses_t[i, :r] = resp
            response_mask[i, :r] = 1
            old_log_probs[i, :r] = old_flat[i][p - 1: p + r - 1]
            token_level_rewards[i, r - 1] = scores[i]

        # 4. advantages through verl's compute_advantage
        data = DataProto.from_dict(
            tensors={"token_level_rewards": token_level_rewards, "response_mask": response_mask},
            non_tensors={"uid": np.array([f"prompt{p}" for p, _, _, _ in rows], dtype=object)},
        )
        pop_advantage_filter_metrics()
        data = compute_advantage(data, adv_estimator=algo.adv_estimator, gamma=algo.gamma, lam=algo.lam,
                                 num_repeat=samples + 2, config=algo)
        metrics = {"step": step, "reward/mean": float(np.mean(scores)), **reward_step_metrics(reward_infos),
                   **pop_advantage_filter_metrics()}

        # 5. policy updates through verl's ppo_loss
        model.train()
        for epoch in range(actor_cfg.ppo_epochs):
            td = TensorDict(
                {"prompts": prompts_t, "responses": responses_t, "attention_mask": attn, "response_mask": response_mask,
                 "old_log_probs": old_log_probs, "advantages": data.batch["advantages"]},
                batch_size=[bsz],
            )
            tu.assign_non_tensor(td, dp_size=1, batch_num_tokens=int(response_mask.sum()), global_batch_size=bsz)
            loss, loss_metrics = ppo_loss(actor_cfg, {"log_probs": torch.cat(all_log_probs())}, td)
            optim.zero_grad()
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            for k, v in loss_metrics.items():
                val = v.values[0] if hasattr(v, "values") else v
                metrics[f"{k}@epoch{epoch}"] = float(val.item() if torch.is_tensor(val) else val)
            metrics[f"actor/grad_norm@epoch{epoch}"] = float(grad_norm)
        metrics["timing_s"] = time.perf_counter() - t0
        history.append(metrics)
        with open(workdir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(metrics) + "\n")
        last = actor_cfg.ppo_epochs - 1
        print(
            f"step {step}: reward/mean={metrics['reward/mean']:.3f} "
            f"reward/format_mean={metrics['reward/format_mean']:.3f} referee/asked={metrics['referee/asked']:.0f} "
            f"adv_filter/filtered_frac={metrics['adv_filter/filtered_frac']:.4f} "
            f"adv_filter/z=[{metrics['adv_filter/z_min']:.2f}, {metrics['adv_filter/z_max']:.2f}] "
            f"actor/pg_loss={metrics[f'actor/pg_loss@epoch{last}']:.4f} "
            f"actor/ppo_kl={metrics[f'actor/ppo_kl@epoch{last}']:.4f} "
            f"actor/pg_clipfrac={metrics[f'actor/pg_clipfrac@epoch{last}']:.3f} "
            f"actor/preclip_frac={metrics[f'actor/preclip_frac@epoch{last}']:.4f} "
            f"({metrics['timing_s']:.1f}s)",
            flush=True,
        )
    print(f"all metrics: {workdir / 'metrics.jsonl'}")
    # the trained policy, in HF format (what the evaluation reads)
    model.save_pretrained(workdir / "trained")
    processor.save_pretrained(workdir / "trained")
    return history


def run_eval(workdir: str | Path, k: int = 3) -> dict:
    """Evaluate the trained tiny model on stand-in files of the three benchmarks (their published formats,
    drawn images and video frames): greedy, voting@k / any@k and both response orders."""
    from r1reward_verl.eval.backends import TransformersBackend
    from r1reward_verl.eval.fixtures import write_fixture_files
    from r1reward_verl.eval.runner import evaluate

    workdir = Path(workdir)
    files = write_fixture_files(workdir / "eval_fixtures")
    backend = TransformersBackend(str(workdir / "trained"), max_new_tokens=32)
    doc = evaluate({"vl_rewardbench": str(files["vl_rewardbench_jsonl"]),
                    "multimodal_rewardbench": str(files["multimodal_rewardbench"]),
                    "mm_rlhf_rewardbench": str(files["mm_rlhf_rewardbench"])},
                   backend, workdir / "eval", k=k, swap=True, max_frames=4, model_name="demo (tiny)", progress=False)  # fmt: skip
    print((workdir / "eval" / "table.md").read_text())
    print(f"evaluation outputs: {workdir / 'eval'} (items.jsonl, metrics.json, table.md, accuracy_vs_k*.png); "
          "a random tiny model mostly writes unparsable text, which counts as wrong")  # fmt: skip
    return doc


def main(argv=None):
    parser = argparse.ArgumentParser(description="StableReinforce through verl on the tiny model (CPU).")
    parser.add_argument("--workdir", default="runs/demo")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--samples", type=int, default=4, help="responses per prompt (rollout.n)")
    parser.add_argument("--data", default=str(SAMPLE_PAIRS), help="pairs (generic pair format); default: the bundled sample")
    parser.add_argument("--lr", type=float, default=0.05, help="large on purpose: moves the tiny policy enough to pre-clip")
    parser.add_argument("--eval-k", type=int, default=3, help="then evaluate with voting@k on stand-in benchmark "
                        "files (greedy + k samples, both orders); 0: no evaluation")  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for hydra_configs/r1reward.yaml")
    args = parser.parse_args(argv)
    history = run_demo(args.workdir, steps=args.steps, samples=args.samples, lr=args.lr, overrides=tuple(args.overrides),
                       data=args.data)
    print(f"done: {len(history)} steps")
    if args.eval_k:
        run_eval(args.workdir, args.eval_k)


if __name__ == "__main__":
    main()
