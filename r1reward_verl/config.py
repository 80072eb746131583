"""Compose the project's Hydra configs the way ``python -m verl.trainer.main_ppo`` does, and validate them.

Used by tests, the demo and dry runs: the result is the same ``DictConfig`` that verl's ``main_ppo``
receives for ``--config-path <repo>/hydra_configs --config-name NAME overrides...``.
"""

from __future__ import annotations

import copy
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
# a source checkout (editable install) has hydra_configs/ at its top; an installed wheel inside the package
CONFIG_DIR = next((d for d in (REPO_ROOT / "hydra_configs", Path(__file__).resolve().parent / "hydra_configs")
                   if (d / "r1reward.yaml").is_file()), REPO_ROOT / "hydra_configs")  # fmt: skip


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


# the keys of a main_ppo config that name local inputs (model directories may also be hub ids)
DATA_KEYS = ("data.train_files", "data.val_files")
MODEL_KEYS = ("actor_rollout_ref.model.path", "reward.reward_model.model_path")
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")  # "org/name": left to transformers, which tries the hub


def missing_local_input(config: DictConfig) -> Optional[str]:
    """The first model directory or data file the run needs that does not exist, as one line naming the key, the
    path and what makes it (``r1reward.made_by`` where a config says, else the environment variable the key reads);
    ``None`` when all exist. Remote paths (``hdfs://``, ...) and hub ids (``org/name`` that is no local path) are
    not checked; the referee is checked only when verl hosts it (``reward.reward_model.enable``)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import InterpolationResolutionError

    hosted = OmegaConf.select(config, "reward.reward_model.enable", default=False)
    keys = [*DATA_KEYS, *(MODEL_KEYS if hosted else MODEL_KEYS[:1])]
    made_by = OmegaConf.select(config, "r1reward.made_by", default=None, throw_on_resolution_failure=False)
    for key in keys:
        parent, leaf = key.rsplit(".", 1)
        section = OmegaConf.select(config, parent, default=None, throw_on_resolution_failure=False)
        if section is None or leaf not in section:
            continue
        raw = OmegaConf.to_container(section, resolve=False)[leaf]
        env = re.findall(r"oc\.env:(\w+)", str(raw))
        try:
            value = OmegaConf.select(config, key)
        except InterpolationResolutionError as e:
            unset = [v for v in env if v not in os.environ]
            why = f"environment variable {unset[0]} is not set" if unset else " ".join(str(e).split("\n")[0].split())
            return f"{key}: cannot resolve {raw!r}: {why}"
        if value is None:
            continue
        for path in [str(v) for v in value] if OmegaConf.is_list(value) else [str(value)]:
            if "://" in path or Path(path).expanduser().exists():
                continue
            if key in MODEL_KEYS and _HUB_ID.match(path):
                continue
            hint = f"make it with: {made_by}" if made_by else (f"set {env[0]}" if env else f"set {key}")
            return f"{key}: no such file or directory: {path} ({hint})"
    return None


class CheckConfigAtStart(Callback):
    """Hydra callback (``hydra.callbacks.r1reward_check`` in ``hydra_configs/_r1reward_common.yaml``).

    ``python -m verl.trainer.main_ppo`` is a ``@hydra.main`` app; Hydra calls ``on_job_start`` with the
    composed config right before ``main`` (once per job of a ``-m`` sweep), i.e. before verl's
    ``validate_config`` and long before ``ray.init``. It runs the checks of :func:`validate_like_main_ppo` (ours on
    ``algorithm``, then verl's ``validate_config`` on a copy): a bad value ends the process there in one line on
    stderr naming the key and value, exit status 2 (verl's own check would print Hydra's multi-line report). Hydra turns an *exception* raised by a callback into
    a warning and runs the job anyway (``hydra/_internal/callbacks.py``), hence ``SystemExit``. In a
    ``-m`` sweep (members run one after another) it ends the sweep at the first bad member, after the
    members before it ran; ``python -m r1reward_verl.dryrun ... -m`` checks every member up front.

    It then checks that the local model directories and data files the run reads exist: verl would find out
    inside the TaskRunner actor, with a 50-line traceback ("Repo id must be in the form ..."). A user error is
    one line on stderr and exit status 2.

    Last, it resolves the job's config in place (:func:`resolve_for_the_task`), so verl receives values, not
    ``${oc.env:...}``: verl resolves its config again inside the TaskRunner actor (``TaskRunner.run``), which on a
    ``ray start`` cluster runs on some node whose environment is not the driver's; ``R1R_NNODES``,
    ``R1R_GPUS_PER_NODE``, ``R1R_CKPT_DIR``... checked here would silently fall back to their defaults there.
    """

    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        try:
            validate_like_main_ppo(copy.deepcopy(config))
        except Exception as e:
            _refuse("invalid configuration, not starting: " + " ".join(str(e).split()))
        missing = missing_local_input(config)
        if missing:
            _refuse(f"not starting: {missing}")
        problem = resolve_for_the_task(config)
        if problem:
            _refuse(f"not starting: {problem}")


def _task_config_of_this_job() -> Optional[DictConfig]:
    """The config object Hydra's ``run_job`` (``hydra/core/utils.py``, 1.3) will hand the task function.

    ``run_job`` makes it (``task_cfg = copy.deepcopy(config)``, then ``del task_cfg["hydra"]``) *before* it calls
    the callbacks' ``on_job_start(config=config)`` and then runs ``task_function(task_cfg)``: what a callback does
    to its ``config`` never reaches the task. No callback hook sees ``task_cfg`` (for ``-m`` the basic launcher
    composes each member's config and calls ``run_job`` with no hook in between), so it is taken from the
    ``run_job`` frame that is calling us. ``None`` when no ``run_job`` is calling (a direct call); a warning on
    stderr when one is but holds no ``task_cfg`` (a Hydra other than 1.3: verl then resolves in the actor)."""
    from hydra.core.utils import run_job

    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is run_job.__code__:
            task_cfg = frame.f_locals.get("task_cfg")
            if isinstance(task_cfg, DictConfig):
                return task_cfg
            print("r1reward: warning: hydra's run_job holds no task_cfg (not Hydra 1.3?): the TaskRunner actor will"
                  " resolve ${oc.env:...} in its own node's environment", file=sys.stderr, flush=True)  # fmt: skip
            return None
        frame = frame.f_back
    return None


def _interpolation_leaves(node, prefix: str = ""):
    """``(key, raw)`` of every leaf of a container (unresolved view) that holds an interpolation."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        key = f"{prefix}[{k}]" if isinstance(k, int) else f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, (dict, list)):
            yield from _interpolation_leaves(v, key)
        elif isinstance(v, str) and "${" in v:
            yield key, v


def _unresolvable(config: DictConfig) -> Optional[str]:
    """The first interpolation of ``config`` (outside ``hydra``) that does not resolve, as one line naming the key,
    the raw value and why (an unset environment variable by name); ``None`` if all resolve."""
    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(config, resolve=False)
    for key, value in _interpolation_leaves({k: v for k, v in raw.items() if k != "hydra"}):
        try:
            OmegaConf.select(config, key, throw_on_resolution_failure=True)
        except Exception as e:  # noqa: BLE001 - any resolver error is the user's config
            unset = [v for v in re.findall(r"oc\.env:(\w+)", value) if v not in os.environ]
            why = f"environment variable {unset[0]} is not set" if unset else " ".join(str(e).split("\n")[0].split())
            return f"{key}: cannot resolve {value!r}: {why}"
    return None


def resolve_for_the_task(config: DictConfig) -> Optional[str]:
    """Resolve every interpolation of the job config (all but the ``hydra`` node) in place, in this process, now:
    of ``config`` and of the copy Hydra hands the task function (:func:`_task_config_of_this_job`), so verl's
    ``main`` and its TaskRunner actor see the values the driver checked, not ``${oc.env:...}`` to be looked up in
    the actor's environment. verl resolves the config itself in ``TaskRunner.run`` (``OmegaConf.resolve``); doing
    it earlier changes no value of verl's own interpolations (``${oc.select:...}`` of other keys): the keys verl
    sets before it resolves (``trainer.device`` by ``auto_set_device``, ``transfer_queue.enable``) are no
    interpolation's source. Returns a one-line problem (an interpolation that does not resolve), else ``None``."""
    from omegaconf import OmegaConf, flag_override

    problem = _unresolvable(config)
    if problem:
        return problem
    task_cfg = _task_config_of_this_job()
    for cfg in [config] if task_cfg is None or task_cfg is config else [config, task_cfg]:
        with flag_override(cfg, "readonly", False):
            for key in [k for k in cfg if k != "hydra"]:
                node = cfg._get_node(key)
                if OmegaConf.is_config(node):
                    OmegaConf.resolve(node)
                elif OmegaConf.is_interpolation(cfg, key):
                    cfg[key] = cfg[key]
    return None


def _refuse(line: str) -> None:
    print(f"r1reward: {line}", file=sys.stderr, flush=True)
    raise SystemExit(2)


class RayPerSweepMember(Callback):
    """Hydra callback (``hydra.callbacks.r1reward_ray_per_job``): end the driver's Ray session after each
    job, so that the next member of a ``-m`` sweep starts its own, and return the job's GPUs first.

    verl's ``run_ppo`` (``verl/trainer/main_ppo.py``) calls ``ray.init`` only ``if not ray.is_initialized()``
    and returns when ``TaskRunner.run`` does; the placement groups the TaskRunner made (which hold the run's
    GPUs) belong to the driver's job and live until it ends. Hydra starts the next member at once, in the same
    process, on the same Ray session: its resource pools then find the GPUs still taken ("Total available GPUs
    0 is less than total desired GPUs 2", seen on the CPU run's sweep; a GPU cluster is no different).
    ``ray.shutdown()`` ends the session (and, for a local cluster, the cluster); the next ``run_ppo``
    initialises afresh. On an external cluster (``ray start``, ``RAY_ADDRESS``) ending the job only *starts*
    the release: the GCS removes the job's placement groups asynchronously, and verl's
    ``ResourcePoolManager._check_resource_available`` of the next member can still count them as taken. So
    before the shutdown this removes the job's own placement groups and waits, at most ``wait_s`` seconds
    (printing what it waits for), until the free GPUs are what they were plus what the job held
    (:func:`r1reward_verl.cluster.release.release_job_gpus`). A single run (no ``-m``) ends its process right after anyway.
    """

    def __init__(self, wait_s: float = 120.0) -> None:
        self.wait_s = wait_s

    def on_job_end(self, config: DictConfig, job_return=None, **kwargs) -> None:
        import ray

        if not ray.is_initialized():
            return
        from r1reward_verl.cluster.release import release_job_gpus

        try:
            release_job_gpus(self.wait_s)
        except Exception as e:  # noqa: BLE001 - a Ray internal that moved must not keep the session open
            print(f"r1reward: warning: could not release this job's GPUs before ray.shutdown(): {e}", file=sys.stderr)
        finally:
            ray.shutdown()


def _scalar_type(hint) -> Optional[type]:
    """``float``/``int``/``bool`` for a field annotated with one of them (or ``Optional`` of one), else None."""
    import types
    import typing

    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        hint = args[0]
    return hint if hint in (float, int, bool) else None


def check_scalar_types(config: DictConfig, prefix: str = "") -> None:
    """Every key of a config node whose ``_target_`` is a dataclass, typed ``float``/``int``/``bool`` there, must
    hold such a value: verl's dataclasses do not check (``actor.optim.lr=abc`` builds an optimizer config with
    ``lr='abc'``, which fails only inside a worker). Raises ``ValueError`` naming the key and the value."""
    import dataclasses
    import importlib
    import typing

    from omegaconf import OmegaConf

    target = config.get("_target_")
    hints = {}
    if isinstance(target, str) and "." in target:
        module, _, name = target.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), name)
            if dataclasses.is_dataclass(cls):
                hints = typing.get_type_hints(cls)
        except Exception:  # noqa: BLE001 - a target we cannot import is verl's business, not ours
            hints = {}
    for key in config:
        try:
            value = config[key]
        except Exception:  # noqa: BLE001 - unresolved interpolations are reported by whoever resolves them
            continue
        if OmegaConf.is_dict(value):
            check_scalar_types(value, f"{prefix}{key}.")
            continue
        want = _scalar_type(hints.get(key)) if key in hints else None
        if want is None or value is None:
            continue
        if want is bool:
            ok = isinstance(value, bool)
        else:  # an int is a float here; a bool is neither
            ok = isinstance(value, (float, int) if want is float else int) and not isinstance(value, bool)
        if not ok:
            raise ValueError(f"{prefix}{key} must be {want.__name__}; got {value!r}")


def check_checkpoint_dir_is_shared(config: DictConfig) -> None:
    """A run on more than one node (``trainer.nnodes > 1``, or a hosted reward pool of ``nnodes > 1``) needs an
    absolute ``trainer.default_local_dir``: every worker writes its checkpoint shards, and the TaskRunner its
    ``latest_checkpointed_iteration.txt``, to that path on its own node; a relative one (the default
    ``${oc.env:R1R_CKPT_DIR,checkpoints}/...``) is a different directory on each node's local disk, and resume
    finds no complete checkpoint. Raises ``ValueError`` naming the key, the value and the fix."""
    from omegaconf import OmegaConf

    def _nodes(key: str) -> int:
        value = OmegaConf.select(config, key, default=1, throw_on_resolution_failure=False)
        return value if isinstance(value, int) and not isinstance(value, bool) else 1

    nodes = {"trainer.nnodes": _nodes("trainer.nnodes")}
    rm = OmegaConf.select(config, "reward.reward_model", default=None, throw_on_resolution_failure=False)
    reward_pool = rm is not None and bool(rm.get("enable")) and bool(rm.get("enable_resource_pool"))
    if reward_pool:
        nodes["reward.reward_model.nnodes"] = _nodes("reward.reward_model.nnodes")
    spread = {k: n for k, n in nodes.items() if n > 1}
    ckpt = OmegaConf.select(config, "trainer.default_local_dir", default=None, throw_on_resolution_failure=False)
    if spread and isinstance(ckpt, str) and not os.path.isabs(ckpt):
        on = ", ".join(f"{k}={n}" for k, n in spread.items())
        raise ValueError(
            f"trainer.default_local_dir is relative ({ckpt!r}) but the run spans nodes ({on}): each node would write"
            f" its checkpoint shards to its own disk and resume would break; set R1R_CKPT_DIR=/shared/... (a directory"
            f" every node mounts) or trainer.default_local_dir=/shared/..."
        )


def validate_like_main_ppo(config: DictConfig) -> None:
    """Run the checks ``python -m verl.trainer.main_ppo`` runs before it starts Ray with our configs:
    :class:`CheckConfigAtStart` (the Hydra callback our configs install), then verl's ``validate_config``, then
    :func:`r1reward_verl.cluster.pools.layout_problems` (batch, parallel sizes and token budgets the policy's GPU
    count must divide or hold)."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    from r1reward_verl.cluster.pools import layout_problems

    check_algorithm_section(config)
    check_scalar_types(config)
    check_checkpoint_dir_is_shared(config)
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    problems = layout_problems(config)  # what verl's workers need but validate_config skips with dynamic batch sizes
    if problems:
        raise ValueError("; ".join(problems))


def validate_like_sft_trainer(cfg: DictConfig) -> list[str]:
    """Build the dataclasses ``SFTTrainer._build_config`` builds (verl's own method). Returns notes."""
    from verl.trainer.sft_trainer import SFTTrainer
    from verl.utils.config import omega_conf_to_dataclass

    notes = []
    check_scalar_types(cfg)
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
