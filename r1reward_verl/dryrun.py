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
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from r1reward_verl.config import CONFIG_DIR, compose_config, validate_like_main_ppo, validate_like_sft_trainer


def sweep_members(name: str, overrides: list[str], config_dir: Path | str = CONFIG_DIR) -> list[list[str]]:
    """The override lists of every job of ``-m``: the config's ``hydra.sweeper.params`` and sweep overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    hcfg = compose_config(name, [], config_dir, return_hydra_config=True)
    params = OmegaConf.to_container(hcfg.hydra.sweeper.get("params") or {}, resolve=False)
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


def check(name: str, overrides: list[str], config_dir: Path | str = CONFIG_DIR) -> Checked:
    """Compose one run and validate it; never raises for a config error (it is reported)."""
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
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)

    members = sweep_members(args.config_name, args.overrides, args.config_path) if args.multirun else [args.overrides]
    failed = 0
    for i, ovs in enumerate(members):
        res = check(args.config_name, ovs, args.config_path)
        head = f"[{i + 1}/{len(members)}] {args.config_name} {' '.join(ovs)}".rstrip()
        print(f"# {head}: {res.kind or '?'} {'OK' if res.ok else 'FAILED'}")
        for note in res.notes:
            print(f"#   {note}")
        if res.config is not None and res.ok:
            if args.summary or args.multirun:
                print(summary(res.config))
            else:
                print(OmegaConf.to_yaml(res.config, resolve=True))
        failed += not res.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
