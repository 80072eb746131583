"""The ``cpu`` platform class, registered in verl's ``PlatformRegistry`` on import (see :mod:`r1reward_verl.cpu`)."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any

import psutil
import torch
from verl.plugin.platform.platform_base import PlatformBase
from verl.plugin.platform.platform_manager import PlatformRegistry

logger = logging.getLogger(__name__)

PLATFORM_NAME = "cpu"


def _noop(*args, **kwargs) -> None:
    return None


class CpuDeviceModule:
    """What verl calls on ``get_torch_device()`` (its ``torch.cuda`` stand-in), answered for the host.

    ``torch.cpu`` has some of it (``synchronize``, ``Stream``, ``current_stream``, ``device_count``, ...);
    caches, memory statistics and RNG helpers that only accelerators have are no-ops or host values.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(torch.cpu, name)

    @staticmethod
    def is_available() -> bool:
        return True

    @staticmethod
    def current_device() -> str:
        # verl passes this to .to()/torch.device(); an int would mean cuda:N (fsdp_utils.py:507)
        return "cpu"

    @staticmethod
    def mem_get_info(*args, **kwargs) -> tuple[int, int]:
        vm = psutil.virtual_memory()
        return vm.available, vm.total

    def get_device_properties(self, *args, **kwargs):
        from types import SimpleNamespace

        return SimpleNamespace(name="cpu", total_memory=psutil.virtual_memory().total)

    get_device_name = staticmethod(lambda *a, **k: "cpu")
    set_device = staticmethod(_noop)
    empty_cache = staticmethod(_noop)
    ipc_collect = staticmethod(_noop)
    reset_peak_memory_stats = staticmethod(_noop)
    set_per_process_memory_fraction = staticmethod(_noop)
    memory_allocated = staticmethod(lambda *a, **k: 0)
    memory_reserved = staticmethod(lambda *a, **k: 0)
    max_memory_allocated = staticmethod(lambda *a, **k: 0)
    max_memory_reserved = staticmethod(lambda *a, **k: 0)
    manual_seed = staticmethod(torch.manual_seed)
    manual_seed_all = staticmethod(torch.manual_seed)
    get_rng_state = staticmethod(lambda *a, **k: torch.get_rng_state())
    set_rng_state = staticmethod(lambda state, *a, **k: torch.set_rng_state(state))
    is_initialized = staticmethod(lambda: True)


_DEVICE_MODULE = CpuDeviceModule()


@PlatformRegistry.register(platform=PLATFORM_NAME)
class PlatformCPU(PlatformBase):
    """verl's platform interface for the host CPU: gloo collectives, Ray's ``GPU`` resource as the slot
    a worker occupies (``ray_kwargs.ray_init.num_gpus`` declares how many), no CUDA IPC (weights reach
    vLLM through shared memory)."""

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self):
        return _DEVICE_MODULE

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        """Available only when no other registered platform (CUDA, NPU, ROCm, ...) is."""
        for name in PlatformRegistry.registered_names():
            cls = PlatformRegistry.get(name)
            if name == PLATFORM_NAME or cls is None or cls is type(self):
                continue
            try:
                if cls().is_platform_available(use_smi_check=use_smi_check):
                    return False
            except Exception:  # a platform whose probe fails is not there
                continue
        return True

    def current_device(self):
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index=None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0):
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return ["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"]

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self):
        return None
