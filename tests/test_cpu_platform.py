"""The cpu platform plug-in (r1reward_verl.cpu): picked by verl's own detection when no accelerator is
present, forced off by VERL_PLATFORM, its patches active only when it is selected; the vLLM plug-in."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

PROBE = r"""
import json, os
FIRST_IMPORT
import verl
import torch.distributed
from verl.plugin.platform import get_platform
from verl.utils.device import get_device_name, get_nccl_backend, get_torch_device
from verl.workers.engine.base import EngineRegistry
def attempt(fn):
    try:
        return fn()
    except Exception as e:
        return f"error: {e}"
engine = attempt(lambda: EngineRegistry.get_engine_cls("language_model", "fsdp2").__name__)
print("PROBE" + json.dumps({
    "platform": get_platform().device_name,
    "device": get_device_name(),
    "backend": get_nccl_backend(),
    "current_device": attempt(lambda: get_torch_device().current_device()),
    "engine": engine,
    "dedupe": getattr(torch.distributed.init_process_group, "_r1reward_dedupe", False),
}))
"""


def _probe(first_import: str = "", **env) -> dict:
    full = {k: v for k, v in os.environ.items() if k not in ("VERL_PLATFORM", "VERL_USE_EXTERNAL_PLUGINS")}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", PROBE.replace("FIRST_IMPORT", first_import)], env=full, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(line for line in out.stdout.splitlines() if line.startswith("PROBE"))
    return json.loads(line[len("PROBE"):])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has a GPU: verl picks cuda, as it should")
@pytest.mark.parametrize("first_import", [
    "",  # verl first: its __init__ loads the plug-ins
    "import r1reward_verl.cpu",  # our plug-in first: it must still register before verl's engines ask
    "import r1reward_verl.trainer",
    "import r1reward_verl.vllm_cpu_plugin as p; p.register()",  # what vLLM's processes do first
])
def test_verl_detection_picks_cpu_without_accelerator_and_engines_resolve(first_import):
    got = _probe(first_import)
    assert got == {"platform": "cpu", "device": "cpu", "backend": "gloo", "current_device": "cpu",
                   "engine": "FSDPEngineWithLMHead", "dedupe": True}  # fmt: skip


def test_forced_nvidia_platform_gets_no_cpu_patches():
    got = _probe(VERL_PLATFORM="nvidia")
    assert got["platform"] == "cuda"
    assert got["dedupe"] is False
    assert got["engine"] == "FSDPEngineWithLMHead"  # verl's own cuda registration, untouched
    # verl's own answer without our plug-ins, for comparison: no cpu platform at all
    bare = _probe(VERL_USE_EXTERNAL_PLUGINS="none")
    assert bare["platform"] == "cuda" and bare["dedupe"] is False
    assert bare["engine"] == "FSDPEngineWithLMHead"


def test_cpu_platform_yields_to_any_available_accelerator(monkeypatch):
    from verl.plugin.platform.platform_base import PlatformBase
    from verl.plugin.platform.platform_manager import PlatformRegistry

    from r1reward_verl.cpu import PlatformCPU

    assert PlatformRegistry.get("cpu") is PlatformCPU
    names = PlatformRegistry.registered_names()
    assert names.index("cpu") > names.index("nvidia"), "built-in accelerators are probed first"

    class FakeAccelerator(PlatformCPU):
        def is_platform_available(self, use_smi_check=False):
            return True

    assert issubclass(FakeAccelerator, PlatformBase)
    monkeypatch.setitem(PlatformRegistry._platforms, "fake_accel", FakeAccelerator)
    assert PlatformCPU().is_platform_available(use_smi_check=True) is False
    monkeypatch.delitem(PlatformRegistry._platforms, "fake_accel")
    assert PlatformCPU().is_platform_available(use_smi_check=True) is (not torch.cuda.is_available())


@pytest.mark.parametrize(
    ("given", "want"),
    [("cpu:gloo,cpu:gloo", "cpu:gloo"), ("cpu:gloo,cuda:nccl", "cpu:gloo,cuda:nccl"), ("gloo", "gloo"), (None, None)],
)
def test_dedupe_backend(given, want):
    from r1reward_verl.cpu.patches import dedupe_backend

    assert dedupe_backend(given) == want
    with pytest.raises(ValueError, match="conflicting"):
        dedupe_backend("cpu:gloo,cpu:mpi")


def test_deduped_backend_string_initialises_a_real_gloo_group(tmp_path):
    """verl's own initialize_global_process_group_ray builds "cpu:gloo,cpu:gloo" on the cpu platform."""
    code = r"""
import os
os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ["PORT"])
import verl, torch, torch.distributed
from verl.utils.distributed import initialize_global_process_group_ray
initialize_global_process_group_ray(timeout_second=60)
t = torch.ones(3); torch.distributed.all_reduce(t)
print("BACKEND", torch.distributed.get_backend(), t.tolist())
torch.distributed.destroy_process_group()
"""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "VERL_PLATFORM"}
    env["PORT"] = str(port)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "BACKEND" in out.stdout and "gloo" in out.stdout and "[1.0, 1.0, 1.0]" in out.stdout, out.stdout


def test_vllm_plugin_is_registered_and_keeps_linear_weights():
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="vllm.general_plugins")}
    assert eps.get("r1reward_cpu") == "r1reward_verl.vllm_cpu_plugin:register"

    from vllm.platforms import current_platform

    from r1reward_verl import vllm_cpu_plugin as vllm_plugin

    assert current_platform.is_cpu(), "the CPU test stack must give vLLM its CPU platform (vllm 0.24.0+cpu record)"
    import vllm.model_executor.layers.utils as vutils

    before = vutils.dispatch_cpu_unquantized_gemm
    try:
        vllm_plugin.register()
        layer = torch.nn.Linear(32, 16)
        weight = layer.weight.detach().clone()
        vutils.dispatch_cpu_unquantized_gemm(layer, remove_weight=True)
        assert layer.weight.shape == (16, 32) and torch.equal(layer.weight, weight), "weight must stay loadable"
        x = torch.randn(2, 32)
        torch.testing.assert_close(layer.cpu_linear(x, layer.weight, layer.bias), layer(x))
        vllm_plugin.register()  # idempotent: no double wrapping
        assert vutils.dispatch_cpu_unquantized_gemm._r1reward_original is before
    finally:
        vutils.dispatch_cpu_unquantized_gemm = before


def test_vllm_version_seen_by_verl():
    """verl/third_party/vllm/__init__.py looks up the distribution named vllm; vLLM needs '+cpu' in it."""
    from importlib.metadata import version

    assert version("vllm") == "0.24.0+cpu"
    assert version("vllm-cpu") == "0.24.0"
    from verl.third_party.vllm import vllm_version

    assert vllm_version == "0.24.0+cpu"
