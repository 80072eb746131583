"""Compose the project's Hydra configs the way ``python -m verl.trainer.main_ppo`` does, and validate them.

Used by tests, the demo and dry runs: the result is the same ``DictConfig`` that verl's ``main_ppo``
receives for ``--config-path <repo>/hydra_configs --config-name NAME overrides...``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra.experimental.callback import Callback
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


def check_algorithm_section(config: DictConfig) -> None:
    """Build ``config.algorithm`` with verl's ``omega_conf_to_dataclass``, so the ``__post_init__`` of its
    ``_target_`` (ours: :class:`r1reward_verl.algos.StableReinforceAlgoConfig`) checks the values.

    verl 0.9.1 never does this itself: ``validate_config`` builds only the actor (whose
    ``policy_loss`` is our :class:`~r1reward_verl.algos.StableReinforcePolicyLossConfig`, checked there)
    and the critic, and the trainer passes the ``algorithm`` DictConfig straight to
    ``compute_advantage``. Without this, ``algorithm.adv_filter_sigma=0`` would start Ray, the
    workers and the rollout, and then zero every advantage.
    """
    from verl.utils.config import omega_conf_to_dataclass

    algorithm = config.get("algorithm")
    if algorithm is not None and "_target_" in algorithm:
        omega_conf_to_dataclass(algorithm)


class CheckConfigAtStart(Callback):
    """Hydra callback (``hydra.callbacks.r1reward_check`` in ``hydra_configs/r1reward_common.yaml``).

    ``python -m verl.trainer.main_ppo`` is a ``@hydra.main`` app; Hydra calls ``on_job_start`` with the
    composed config right before ``main`` (once per job of a ``-m`` sweep), i.e. before verl's
    ``validate_config`` and long before ``ray.init``. A bad ``algorithm`` value ends the process there
    (exit status 1, the key and value on stderr). Hydra turns an *exception* raised by a callback into
    a warning and runs the job anyway (``hydra/_internal/callbacks.py``), hence ``SystemExit``. In a
    ``-m`` sweep (members run one after another) it ends the sweep at the first bad member, after the
    members before it ran; ``python -m r1reward_verl.dryrun ... -m`` checks every member up front.
    """

    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        try:
            check_algorithm_section(config)
        except Exception as e:
            raise SystemExit(f"r1reward: invalid configuration, not starting: {e}") from e


class RayPerSweepMember(Callback):
    """Hydra callback (``hydra.callbacks.r1reward_ray_per_job``): end the driver's Ray session after each
    job, so that the next member of a ``-m`` sweep starts its own.

    verl's ``run_ppo`` (``verl/trainer/main_ppo.py``) calls ``ray.init`` only ``if not ray.is_initialized()``
    and returns when ``TaskRunner.run`` does; the TaskRunner actor, its workers and their placement groups
    (which hold the run's GPUs) are released only when Ray collects the dropped handle, asynchronously.
    Hydra starts the next member at once, in the same process, on the same Ray session: its resource
    pools then find the GPUs still taken ("Total available GPUs 0 is less than total desired GPUs 2", seen
    on the CPU run's sweep; a GPU cluster is no different). ``ray.shutdown()`` ends the session, which
    kills the job's non-detached actors and, for a local cluster, the cluster itself; the next ``run_ppo``
    initialises afresh. A single run (no ``-m``) ends its process right after anyway.
    """

    def on_job_end(self, config: DictConfig, job_return=None, **kwargs) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()


def validate_like_main_ppo(config: DictConfig) -> None:
    """Run the checks ``python -m verl.trainer.main_ppo`` runs before it starts Ray with our configs:
    :class:`CheckConfigAtStart` (the Hydra callback our configs install), then verl's ``validate_config``."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    check_algorithm_section(config)
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
