"""vLLM general plug-in (entry point group ``vllm.general_plugins``, loaded by vLLM in each of its
processes, the engine-core workers included): keep vLLM-CPU's linear weights where verl's weight sync
can write them. A no-op unless vLLM runs on its CPU platform.

vLLM-CPU prepacks each unquantized linear weight into a oneDNN handle and replaces ``layer.weight`` with
an empty tensor (vllm/model_executor/layers/utils.py ``dispatch_cpu_unquantized_gemm``, called from
layers/linear.py:213 and vocab_parallel_embedding.py:63 through a module-attribute import). verl syncs
the actor's weights into the rollout in place after every step (``load_weights``), which then fails
("Attempted to load weight ... into parameter (torch.Size([0]))") or, worse, is ignored. For 2-D weights
we keep the weight and compute with ``torch.nn.functional.linear``: slower, but the synced weights are
the ones used. Other layers (meta weights, conv kernels) keep vLLM's own dispatch.

Kept outside r1reward_verl.cpu: this module imports nothing of verl.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)

_TARGET = "vllm.model_executor.layers.utils"


def plain_linear(x, weight, bias=None):
    return torch.nn.functional.linear(x, weight, bias)


def keep_weights_dispatch(original):
    def dispatch_cpu_unquantized_gemm(layer, remove_weight):
        weight = layer.weight
        if weight.is_meta or weight.ndim != 2:
            return original(layer, remove_weight)
        layer.cpu_linear = plain_linear
        return None

    dispatch_cpu_unquantized_gemm._r1reward_original = original
    return dispatch_cpu_unquantized_gemm


def register() -> None:
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    import importlib

    utils = importlib.import_module(_TARGET)
    if getattr(utils.dispatch_cpu_unquantized_gemm, "_r1reward_original", None) is None:
        utils.dispatch_cpu_unquantized_gemm = keep_weights_dispatch(utils.dispatch_cpu_unquantized_gemm)
        logger.info("r1reward_verl.cpu: vLLM-CPU linear layers keep their weights (verl weight sync)")
