"""CPU dry run: compose any run of ``hydra_configs/``, validate it as verl would, print it; no training.

    python -m r1reward_verl.dryrun --config-name r1reward [overrides ...]
    python -m r1reward_verl.dryrun --config-name r1reward_ablations -m          # every sweep member
    python -m r1reward_verl.dryrun --config-name r1reward -m ablation=no_preclip,no_adv_filter
    python -m r1reward_verl.dryrun --config-name r1reward_sft model.path=/ckpt/base

PPO configs (those with ``actor_rollout_ref``) pass through the checks ``verl.trainer.main_ppo`` runs
before it starts Ray (``validate_config`` with the configured GPU counts). SFT configs build the
dataclasses ``verl.trainer.sft_trainer.SFTTrainer`` builds first (``_build_config``); the model part
needs ``model.path`` to be a local directory (it reads the tokenizer), otherwise it is reported as
not checked. Sweeps expand ``hydra.sweeper.params`` of the config and ``a=x,y`` overrides the way
Hydra's basic launcher does (cartesian product). Exit status 1 if any member fails.

GPU runs are also checked against the cluster they are told about (``--cluster NODESxGPUS``, default
``R1R_CLUSTER`` or trainer.nnodes x 8; ``--gpu-gib``, default 79.6, an "80 GB" H100/H800/A100): the batch and
parallel sizes the policy's GPU count must divide, whether verl's resource pools (policy, hosted referee) can be
placed on its nodes, and, per GPU, the memory of each role at the rollout's wake-up and in the update
(:mod:`r1reward_verl.cluster.memory`, arithmetic); the table is printed, and a layout that cannot start fails.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from r1reward_verl.cluster.pools import Cluster, parse_cluster, placement_problem, pools_of
from r1reward_verl.config import CONFIG_DIR, compose_config, validate_like_main_ppo, validate_like_sft_trainer


def sweep_members(name: str, overrides: list[str], config_dir: Path | str = CONFIG_DIR) -> list[list[str]]:
    """The override lists of every job of ``-m``: the config's ``hydra.sweeper.params`` and sweep overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    hcfg = compose_config(name, [], config_dir, return_hydra_config=True)
    params = hcfg.hydra.sweeper.get("params")  # None where the config sets none (all but r1reward_ablations)
    params = OmegaConf.to_container(params, resolve=False) if params is not None else {}
    parser = OverridesParser.create()
    # config params first, command line after (the command line wins for the same key)
    merged: dict[str, object] = {}
    for ov in parser.parse_overrides([f"{k}={v}" for k, v in params.items()]) + parser.parse_overrides(overrides):
        merged[ov.get_key_element()] = ov
    axes = []
    for key, ov in merged.items():
        values = list(ov.sweep_string_iterator()) if ov.is_sweep_override() else [ov.get_value_element_as_str()]
        axes.append([f"{key}={v}" for v in values])
    return [list(c) for c in itertools.product(*axes)] if axes else [[]]


@dataclass
class Checked:
    overrides: list[str]
    kind: str = ""
    ok: bool = True
    notes: list[str] = field(default_factory=list)
    config: DictConfig | None = None
    memory: str = ""  # the per-GPU memory table of a GPU run


def cluster_of(cfg: DictConfig, cluster: str | None, gpu_gib: float) -> Cluster:
    """The cluster named by ``--cluster`` (or ``R1R_CLUSTER``), else trainer.nnodes nodes of 8 GPUs."""
    import os

    text = cluster or os.environ.get("R1R_CLUSTER") or f"{int(cfg.trainer.nnodes)}x8"
    return parse_cluster(text, gpu_gib)


def check_gpu_layout(cfg: DictConfig, cluster: Cluster, out: Checked) -> None:
    """Placement of the pools and memory per GPU of a PPO config on ``cluster`` (divisibility,
    :func:`~r1reward_verl.cluster.pools.layout_problems`, is part of ``validate_like_main_ppo``)."""
    from r1reward_verl.cluster.memory import memory_report

    placed = placement_problem(pools_of(cfg), cluster)
    problems = [placed] if placed else []
    report = memory_report(cfg, cluster)
    out.memory = report.table()
    out.notes += report.notes + [f"memory: {p}" for p in report.problems]
    out.notes += [f"layout on {cluster.describe()} GPUs of {cluster.gpu_gib:g} GiB: {p}" for p in problems]
    out.ok = out.ok and not problems and not report.problems


def check(name: str, overrides: list[str], config_dir: Path | str = CONFIG_DIR, cluster: str | None = None,
          gpu_gib: float = Cluster.gpu_gib) -> Checked:  # fmt: skip
    """Compose one run and validate it (a GPU run also against ``cluster``, see the module docstring); never
    raises for a config error (it is reported)."""
    out = Checked(list(overrides))
    try:
        cfg = compose_config(name, overrides, config_dir)
        out.config = cfg
        if "actor_rollout_ref" in cfg:
            out.kind = "ppo"
            validate_like_main_ppo(cfg)
        else:
            out.kind = "sft"
            out.notes += validate_like_sft_trainer(cfg)
        OmegaConf.to_container(cfg, resolve=True)  # every interpolation, e.g. ${oc.env:R1R_DATA_DIR}
        if out.kind == "ppo" and str(OmegaConf.select(cfg, "trainer.device", default="cuda")) != "cpu":
            check_gpu_layout(cfg, cluster_of(cfg, cluster, gpu_gib), out)
    except InterpolationResolutionError as e:
        out.ok = False
        out.notes.append(f"unresolved: {e}. Set the environment variable or override the key.")
    except Exception as e:  # noqa: BLE001 - reported per member, exit status 1
        out.ok = False
        out.notes.append(f"{type(e).__name__}: {e}")
    return out


SUMMARY_KEYS = (
    "trainer.project_name",
    "trainer.experiment_name",
    "algorithm.adv_estimator",
    "algorithm.adv_filter_sigma",
    "actor_rollout_ref.actor.policy_loss.loss_mode",
    "actor_rollout_ref.actor.policy_loss.preclip",
    "actor_rollout_ref.actor.optim.lr",
    "algorithm.use_kl_in_reward",
    "algorithm.kl_ctrl.kl_coef",
    "data.train_batch_size",
    "actor_rollout_ref.actor.ppo_mini_batch_size",
    "reward.custom_reward_function.reward_kwargs.referee",
    "reward.reward_model.enable",
    "trainer.total_epochs",
    "trainer.logger",
    "optim.lr",
)


def summary(cfg: DictConfig) -> str:
    lines = []
    for key in SUMMARY_KEYS:
        value = OmegaConf.select(cfg, key, default="<absent>", throw_on_resolution_failure=False)
        if value != "<absent>":
            lines.append(f"  {key} = {value}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config-name", default="r1reward")
    ap.add_argument("--config-path", default=str(CONFIG_DIR))
    ap.add_argument("-m", "--multirun", action="store_true", help="expand the sweep and check every member")
    ap.add_argument("--summary", action="store_true", help="print key values only, not the whole resolved config")
    ap.add_argument("--cluster", default=None, metavar="NODESxGPUS",
                    help="the cluster a GPU run is checked against, e.g. 1x8 (default: R1R_CLUSTER, else trainer.nnodes x 8)")
    ap.add_argument("--gpu-gib", type=float, default=Cluster.gpu_gib,
                    help="memory of one GPU in GiB (default %(default)s: an '80 GB' H100/H800/A100)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)

    members = sweep_members(args.config_name, args.overrides, args.config_path) if args.multirun else [args.overrides]
    failed = 0
    for i, ovs in enumerate(members):
        res = check(args.config_name, ovs, args.config_path, args.cluster, args.gpu_gib)
        head = f"[{i + 1}/{len(members)}] {args.config_name} {' '.join(ovs)}".rstrip()
        print(f"# {head}: {res.kind or '?'} {'OK' if res.ok else 'FAILED'}")
        for note in res.notes:
            print(f"#   {note}")
        if res.memory:
            print("# memory per GPU (arithmetic, GiB):\n" + "\n".join(f"#   {line}" for line in res.memory.splitlines()))
        if res.config is not None and res.ok:
            if args.summary or args.multirun:
                print(summary(res.config))
            else:
                print(OmegaConf.to_yaml(res.config, resolve=True))
        failed += not res.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
