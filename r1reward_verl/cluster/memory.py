"""Per GPU, the memory each role of a PPO run holds, from the model's size and the layout. Arithmetic, not a
measurement: it tells a layout that cannot start from one that may (``examples/gpu_smoke.sh`` measures).

Two moments decide whether a policy GPU runs out of memory:

* **the rollout's wake-up**: verl's hybrid engine wakes vLLM on the policy GPUs while the actor's training
  states stay resident (unless offloaded); vLLM then takes ``rollout.gpu_memory_utilization`` of the GPU (its
  weights and KV cache). What stays resident: FSDP keeps its sharded fp32 parameters (``fsdp_config.model_dtype``)
  and Adam's two moments (gradients are freed after each step); Megatron keeps its bf16 parameters, its fp32
  gradient buffer (released only with ``param_offload``) and, with the distributed optimizer, its share of
  the fp32 master weights and two moments. The reference policy (when a KL term needs it) is resident unless
  ``ref.*.param_offload``.
* **the update** (vLLM asleep when ``free_cache_engine``): the same states plus gradients and activations for a
  micro-batch of ``ppo_max_token_len_per_gpu`` tokens (dynamic batch sizes) or ``ppo_micro_batch_size_per_gpu``
  full-length sequences; activations are estimated roughly (checkpointed layer inputs, and the bf16 logits with
  one working copy: verl's flash-attn cross entropy works in place). Offloaded states come back for the update.

The model's size comes from its ``config.json`` (a local checkpoint) or, for a hub id we know, from the same
numbers, instantiated on PyTorch's ``meta`` device (no weights, no download) and counted exactly.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from r1reward_verl.cluster.pools import Cluster

GIB = 1024**3
RUNTIME_GIB = 1.5  # per trainer process: CUDA context, NCCL buffers, allocator fragmentation

BYTES = {"fp32": 4, "float32": 4, "bf16": 2, "bfloat16": 2, "fp16": 2, "float16": 2}

# config.json of Qwen/Qwen2.5-VL-7B-Instruct, the size-relevant keys (the paper's base model and referee)
QWEN25_VL_7B = {
    "model_type": "qwen2_5_vl", "architectures": ["Qwen2_5_VLForConditionalGeneration"],
    "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
    "num_key_value_heads": 4, "vocab_size": 152064, "tie_word_embeddings": False, "hidden_act": "silu",
    "max_position_embeddings": 128000, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
                      "num_heads": 16, "in_chans": 3, "out_hidden_size": 3584, "patch_size": 14,
                      "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
                      "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2, "temporal_patch_size": 2},
}  # fmt: skip
# Qwen/Qwen2.5-VL-3B-Instruct (the policy of genrm_policy.yaml): where its config.json differs from the 7B's
QWEN25_VL_3B = {
    **QWEN25_VL_7B, "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36, "num_attention_heads": 16,
    "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True,
    "vision_config": {**QWEN25_VL_7B["vision_config"], "out_hidden_size": 2048},
}  # fmt: skip
KNOWN_MODELS = {"Qwen/Qwen2.5-VL-7B-Instruct": QWEN25_VL_7B, "Qwen/Qwen2.5-VL-3B-Instruct": QWEN25_VL_3B}
PAPER_BASE = "Qwen/Qwen2.5-VL-7B-Instruct"


@dataclass(frozen=True)
class ModelSize:
    """Parameter counts of a checkpoint, by part (for pipeline stages), and the shapes activations need."""

    name: str
    params: int
    vision: int  # the vision tower (Megatron puts it on the first pipeline stage)
    embed: int
    head: int  # lm_head (the last stage); 0 when tied to the embedding
    hidden: int
    layers: int
    vocab: int

    def max_stage(self, pp: int) -> int:
        """Parameters of the largest of ``pp`` pipeline stages (decoder layers split evenly; the embedding and
        vision tower on the first stage, the head on the last)."""
        if pp <= 1:
            return self.params
        body = (self.params - self.vision - self.embed - self.head) / pp
        return int(body + max(self.vision + self.embed, self.head))


@functools.lru_cache(maxsize=8)
def model_size(path_or_id: str) -> Optional[ModelSize]:
    """Count the parameters of a local checkpoint directory (its ``config.json``) or of a known hub id, on the
    ``meta`` device. None when neither applies."""
    import torch
    from transformers import AutoConfig

    local = Path(path_or_id).expanduser()
    if (local / "config.json").is_file():
        config = AutoConfig.from_pretrained(str(local))
    elif path_or_id in KNOWN_MODELS:
        config = AutoConfig.for_model(**json.loads(json.dumps(KNOWN_MODELS[path_or_id])))
    else:
        return None
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    with torch.device("meta"):
        try:
            model = AutoModelForImageTextToText.from_config(config)
        except ValueError:
            model = AutoModelForCausalLM.from_config(config)
    parts = {"visual": 0, "embed_tokens": 0, "lm_head": 0}
    total = 0
    for name, p in model.named_parameters():  # shared (tied) tensors are listed once
        total += p.numel()
        for key in parts:
            if key in name:
                parts[key] += p.numel()
    text = getattr(config, "text_config", None) or config
    return ModelSize(path_or_id, total, parts["visual"], parts["embed_tokens"], parts["lm_head"],
                     int(text.hidden_size), int(text.num_hidden_layers), int(text.vocab_size))  # fmt: skip


@dataclass
class Line:
    item: str
    detail: str
    gib: float


@dataclass
class GpuBudget:
    """The memory of one GPU of a pool at one moment: its lines, their sum, and the GPU's size."""

    pool: str
    moment: str
    gpu_gib: float
    lines: list[Line] = field(default_factory=list)

    def add(self, item: str, detail: str, nbytes: float) -> None:
        self.lines.append(Line(item, detail, nbytes / GIB))

    @property
    def total(self) -> float:
        return sum(line.gib for line in self.lines)

    @property
    def fits(self) -> bool:
        return self.total <= self.gpu_gib


def _get(cfg: DictConfig, key: str, default=None):
    return OmegaConf.select(cfg, key, default=default)


def _e(n: float) -> str:
    return f"{n / 1e9:.2f}e9"


def _engine(cfg: DictConfig, role: str) -> tuple[str, DictConfig]:
    """``("fsdp", fsdp_config)`` or ``("megatron", megatron)`` of actor_rollout_ref.<role>."""
    node = cfg.actor_rollout_ref[role]
    if "megatron" in node and str(_get(cfg, f"actor_rollout_ref.{role}.strategy", "")) == "megatron":
        return "megatron", node.megatron
    return "fsdp", node.get("fsdp_config") or OmegaConf.create({})


def _activations(cfg: DictConfig, size: ModelSize, tp: int) -> tuple[str, float]:
    actor = cfg.actor_rollout_ref.actor
    seq = int(cfg.data.max_prompt_length) + int(cfg.data.max_response_length)
    if actor.get("use_dynamic_bsz", False):
        tokens, how = int(actor.ppo_max_token_len_per_gpu), "ppo_max_token_len_per_gpu"
    else:
        tokens, how = int(actor.ppo_micro_batch_size_per_gpu or 1) * seq, f"micro-batch x {seq}-token sequences"
    ckpt = bool(_get(cfg, "actor_rollout_ref.model.enable_gradient_checkpointing", False))
    per_token = size.hidden * size.layers * 2 * (1 if ckpt else 17)  # checkpointed inputs, or ~34 B/hidden/layer
    logits = size.vocab / tp * 4  # bf16 logits + one working copy (verl's flash-attn cross entropy is in place)
    return f"~{tokens} tokens ({how}); layer inputs + logits", tokens * (per_token + logits)


def policy_budgets(cfg: DictConfig, size: ModelSize, gpu_gib: float, ref_size: Optional[ModelSize] = None) -> list[GpuBudget]:
    """The policy GPU's memory at the rollout's wake-up and in the update (see the module docstring)."""
    from verl.trainer.ppo.utils import need_reference_policy

    P = size.params
    world = int(cfg.trainer.n_gpus_per_node) * int(cfg.trainer.nnodes)
    kind, eng = _engine(cfg, "actor")
    wake = GpuBudget("policy", "rollout wake-up", gpu_gib)
    update = GpuBudget("policy", "update", gpu_gib)
    tp = 1
    if kind == "fsdp":
        dtype = str(eng.get("model_dtype", "fp32"))
        pb = BYTES.get(dtype, 4)
        states = [("actor params", f"{dtype} {pb} B x {_e(P)} / {world} (FSDP)", pb * P / world, "param_offload"),
                  ("actor Adam m, v", f"fp32 8 B x {_e(P)} / {world}", 8 * P / world, "optimizer_offload")]  # fmt: skip
        update_only = [("actor grads", f"fp32 4 B x {_e(P)} / {world}", 4 * P / world)]
    else:
        tp = int(eng.get("tensor_model_parallel_size", 1))
        pp = int(eng.get("pipeline_model_parallel_size", 1))
        cp = int(eng.get("context_parallel_size", 1) or 1)
        dp = max(1, world // (tp * pp * cp)) if eng.get("use_distributed_optimizer", True) else 1
        shard = size.max_stage(pp) / tp
        where = f"TP {tp} x PP {pp}, largest stage {_e(shard * tp)} / {tp}"
        states = [("actor params", f"bf16 2 B x {where}", 2 * shard, "param_offload"),
                  ("actor grad buffer", f"fp32 4 B x {where}", 4 * shard, "param_offload"),
                  ("actor optimizer", f"fp32 master + m + v 12 B, / DP {dp}", 12 * shard / dp, "optimizer_offload")]  # fmt: skip
        update_only = []
    # offloaded states leave the GPU while vLLM is awake; verl loads them back for the update
    for item, detail, nbytes, offload in states:
        off = bool(eng.get(offload, False))
        wake.add(item, detail + (f" ({offload})" if off else ""), 0 if off else nbytes)
        update.add(item, detail, nbytes)
    for item, detail, nbytes in update_only:
        update.add(item, detail, nbytes)
    if need_reference_policy(cfg):
        rs = ref_size or size
        rkind, reng = _engine(cfg, "ref")
        if rkind == "fsdp":
            dtype = str(reng.get("model_dtype", "fp32"))
            nbytes = BYTES.get(dtype, 4) * rs.params / world
            detail = f"{dtype} x {_e(rs.params)} / {world}"
        else:
            rtp = int(reng.get("tensor_model_parallel_size", 1))
            nbytes = 2 * rs.max_stage(int(reng.get("pipeline_model_parallel_size", 1))) / rtp
            detail = f"bf16 2 B, TP {rtp} x PP {reng.get('pipeline_model_parallel_size', 1)}"
        off = reng.get("param_offload", False)
        for b in (wake, update):
            b.add("reference", detail + (" offloaded" if off else ""), 0 if off else nbytes)
    rollout = cfg.actor_rollout_ref.rollout
    share = float(rollout.gpu_memory_utilization)
    wake.add("rollout (vLLM)", f"gpu_memory_utilization {share} x {gpu_gib:g} GiB", share * gpu_gib * GIB)
    if not rollout.get("free_cache_engine", True):
        update.add("rollout (vLLM)", "awake in the update (free_cache_engine: false)", share * gpu_gib * GIB)
    how, act = _activations(cfg, size, tp)
    update.add("activations", how, act)
    for b in (wake, update):
        b.add("runtime", "CUDA context, NCCL, fragmentation", RUNTIME_GIB * GIB)
    return [wake, update]


def rollout_weights_problem(share: float, gpu_gib: float, size: ModelSize, tp: int, who: str) -> Optional[str]:
    """vLLM needs its weights (bf16, split over its tensor-parallel size) inside its share, with room for a KV
    cache."""
    weights = 2 * size.params / tp / GIB
    if weights >= share * gpu_gib:
        return (f"{who}: bf16 weights 2 B x {_e(size.params)} / TP {tp} = {weights:.1f} GiB do not fit its "
                f"gpu_memory_utilization {share} x {gpu_gib:g} GiB = {share * gpu_gib:.1f} GiB (no KV cache left)")  # fmt: skip
    return None


def referee_budget(cfg: DictConfig, size: ModelSize, gpu_gib: float) -> GpuBudget:
    """A GPU of the reward model's pool (our referee or judge): verl's vLLM server with its share."""
    b = GpuBudget("reward model", "serving", gpu_gib)
    share = float(cfg.reward.reward_model.rollout.gpu_memory_utilization)
    b.add("vLLM server", f"gpu_memory_utilization {share} x {gpu_gib:g} GiB", share * gpu_gib * GIB)
    return b


@dataclass
class MemoryReport:
    budgets: list[GpuBudget]
    problems: list[str]
    notes: list[str]

    def table(self) -> str:
        rows = []
        for b in self.budgets:
            verdict = f"fits ({b.gpu_gib - b.total:.1f} GiB free)" if b.fits else f"OVER by {b.total - b.gpu_gib:.1f} GiB"
            rows.append(f"{b.pool} GPU, {b.moment}: {b.total:.1f} of {b.gpu_gib:g} GiB, {verdict}")
            rows += [f"    {line.gib:6.1f}  {line.item:<22} {line.detail}" for line in b.lines]
        return "\n".join(rows)


def sized(path: str, notes: list[str], who: str) -> Optional[ModelSize]:
    """The size of ``path``; a path we cannot read is sized as the paper's base model, with a note."""
    size = model_size(path)
    if size is None:
        notes.append(f"{who} {path} is neither a local checkpoint nor a known hub id: sized as {PAPER_BASE}")
        size = model_size(PAPER_BASE)
    return size


def memory_report(cfg: DictConfig, cluster: Cluster) -> MemoryReport:
    """Every pool's GPU budgets for ``cfg`` on GPUs of ``cluster.gpu_gib`` GiB, and what does not fit."""
    notes: list[str] = []
    problems: list[str] = []
    policy = sized(str(cfg.actor_rollout_ref.model.path), notes, "the policy")
    budgets = policy_budgets(cfg, policy, cluster.gpu_gib)
    rollout = cfg.actor_rollout_ref.rollout
    weights = rollout_weights_problem(float(rollout.gpu_memory_utilization), cluster.gpu_gib, policy,
                                      int(rollout.tensor_model_parallel_size), "the policy's rollout")  # fmt: skip
    problems += [weights] if weights else []
    if _get(cfg, "reward.reward_model.enable", False) and _get(cfg, "reward.reward_model.enable_resource_pool", False):
        referee = sized(str(cfg.reward.reward_model.model_path), notes, "the reward model")
        budgets.append(referee_budget(cfg, referee, cluster.gpu_gib))
        rm = cfg.reward.reward_model.rollout
        weights = rollout_weights_problem(float(rm.gpu_memory_utilization), cluster.gpu_gib, referee,
                                          int(rm.tensor_model_parallel_size), "the reward model")  # fmt: skip
        problems += [weights] if weights else []
    for b in budgets:
        if not b.fits:
            top = ", ".join(f"{line.item} {line.gib:.1f}" for line in sorted(b.lines, key=lambda x: -x.gib)[:4])
            problems.append(f"{b.pool} GPU at the {b.moment}: {b.total:.1f} GiB > {b.gpu_gib:g} GiB ({top})")
    return MemoryReport(budgets, problems, notes)
