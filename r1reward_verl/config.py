"""Compose the project's Hydra configs the way ``python -m verl.trainer.main_ppo`` does, and validate them.

Used by tests, the demo and dry runs: the result is the same ``DictConfig`` that verl's ``main_ppo``
receives for ``--config-path <repo>/hydra_configs --config-name NAME overrides...``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "hydra_configs"


def compose_config(name: str = "r1reward", overrides: Sequence[str] = (), config_dir: Path | str = CONFIG_DIR,
                   return_hydra_config: bool = False) -> DictConfig:  # fmt: skip
    """Compose ``config_dir/NAME.yaml`` (which extends verl's trees via ``pkg://verl.trainer.config``);
    ``return_hydra_config`` keeps the ``hydra`` node (e.g. ``hydra.sweeper.params``)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base=None):
        return compose(config_name=name, overrides=list(overrides), return_hydra_config=return_hydra_config)


def validate_like_main_ppo(config: DictConfig) -> None:
    """Run the checks ``verl.trainer.main_ppo.main`` runs before it starts Ray."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))


def validate_like_sft_trainer(cfg: DictConfig) -> list[str]:
    """Build the dataclasses ``SFTTrainer._build_config`` builds (verl's own method). Returns notes."""
    from verl.trainer.sft_trainer import SFTTrainer
    from verl.utils.config import omega_conf_to_dataclass

    notes = []
    if Path(str(cfg.model.path)).is_dir():
        trainer = object.__new__(SFTTrainer)  # only the config step of its __init__, no engine, no GPU
        trainer.config = cfg
        trainer._build_config()
    else:
        for key in ("engine", "optim", "checkpoint", "profiler"):
            omega_conf_to_dataclass(cfg[key])
        notes.append(f"model part not checked: model.path={cfg.model.path} is not a local directory")
    if cfg.data.train_batch_size % (cfg.trainer.n_gpus_per_node * cfg.trainer.nnodes):
        raise ValueError("data.train_batch_size must be divisible by the number of GPUs")
    return notes
