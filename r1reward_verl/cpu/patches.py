"""The patches verl 0.9.1 needs to train on the ``cpu`` platform; applied by :mod:`r1reward_verl.cpu` only
when that platform is selected, once per process. Each is small and names what it works around."""

from __future__ import annotations

import functools
import logging

import torch.distributed

logger = logging.getLogger(__name__)

_applied = False


def dedupe_backend(backend):
    """``"cpu:gloo,cpu:gloo"`` -> ``"cpu:gloo"``; other strings unchanged (``"cpu:gloo,cuda:nccl"`` stays)."""
    if not isinstance(backend, str) or "," not in backend:
        return backend
    parts = list(dict.fromkeys(p.strip() for p in backend.split(",") if p.strip()))
    devices = [p.split(":", 1)[0] for p in parts]
    if len(set(devices)) != len(devices):
        raise ValueError(f"conflicting process-group backends for one device type: {backend!r}")
    return ",".join(parts)


def patch_process_group_backend() -> None:
    """verl/utils/distributed.py:63 and :89 build ``f"cpu:gloo,{get_device_name()}:{get_nccl_backend()}"``,
    which on the cpu platform is ``"cpu:gloo,cpu:gloo"``; torch rejects it ("Duplicate device type cpu").
    Wrap ``torch.distributed.init_process_group`` (verl looks it up at call time) to de-duplicate."""
    original = torch.distributed.init_process_group
    if getattr(original, "_r1reward_dedupe", False):
        return

    @functools.wraps(original)
    def init_process_group(*args, **kwargs):
        if "backend" in kwargs:
            kwargs["backend"] = dedupe_backend(kwargs["backend"])
        elif args:
            args = (dedupe_backend(args[0]), *args[1:])
        return original(*args, **kwargs)

    init_process_group._r1reward_dedupe = True
    torch.distributed.init_process_group = init_process_group


def register_cpu_engines() -> None:
    """verl's training engines are registered for ``device="cuda"`` (and npu) only
    (verl/workers/engine/fsdp/transformer_impl.py ``@EngineRegistry.register(..., device=["cuda", "npu"])``),
    so ``EngineRegistry.get_engine_cls`` (verl/workers/engine/base.py:396) finds nothing for ``cpu``. The
    FSDP engines are plain torch and run on the host: register each ``cuda`` engine for ``cpu`` too,
    through verl's own ``EngineRegistry.register``."""
    import verl.workers.engine  # noqa: F401  (registers verl's engines)
    from verl.workers.engine.base import EngineRegistry

    for model_type, backends in list(EngineRegistry._engines.items()):
        for backend, by_device in list(backends.items()):
            if "cpu" in by_device or "cuda" not in by_device:
                continue
            EngineRegistry.register(model_type=model_type, backend=backend, device="cpu")(by_device["cuda"])


def apply() -> None:
    global _applied
    if _applied:
        return
    _applied = True
    patch_process_group_backend()
    register_cpu_engines()
    logger.info("r1reward_verl.cpu: cpu platform selected; process-group backend and engine patches applied")
