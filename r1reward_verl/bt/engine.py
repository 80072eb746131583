"""verl's FSDP value-model engine for the scalar reward model, registered as ``model_type="bt_reward_model"``.

It differs from verl's ``value_model`` engine (``FSDPEngineWithValueHead``, whose per-token values it keeps) in
two places: the module is :class:`~r1reward_verl.bt.model.R1RQwen2_5_VLForTokenClassification` (verl's value
branch loads ``AutoModelForTokenClassification`` with flash-attention 2 or trl's value head, neither of which
covers Qwen2.5-VL), and every batch is split into micro-batches by whole pairs (verl's ``force_group_size``,
``verl/utils/seqlen_balancing.py``, "for RM training"). Registered for cpu too: the ``cpu`` platform plug-in
copies only the engines registered before it runs.
"""

from __future__ import annotations

import warnings


from verl.models.transformers.monkey_patch import apply_monkey_patch
from verl.utils import tensordict_utils as tu
from verl.utils.fsdp_utils import get_init_weight_context_manager
from verl.utils.torch_dtypes import PrecisionType
from verl.workers.engine.base import EngineRegistry
from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithValueHead

from r1reward_verl.bt.model import R1RQwen2_5_VLForTokenClassification

MODEL_TYPE = "bt_reward_model"


@EngineRegistry.register(model_type=MODEL_TYPE, backend=["fsdp", "fsdp2"], device=["cuda", "npu", "cpu"])
class FSDPEngineWithBTHead(FSDPEngineWithValueHead):
    def _build_module(self):
        mc = self.model_config
        for flag in ("use_liger", "use_fused_kernels"):  # both replace the forward with a log-prob one
            if getattr(mc, flag, False):
                raise ValueError(f"model.{flag}=true is not supported by the Bradley-Terry reward model")
        if getattr(mc, "lora_rank", 0):
            raise ValueError("model.lora_rank > 0 is not supported by the Bradley-Terry reward model")
        if mc.hf_config.model_type != "qwen2_5_vl":
            raise ValueError(f"model.path {mc.local_path}: the Bradley-Terry reward model is built on Qwen2.5-VL, "
                             f"got model_type {mc.hf_config.model_type!r}")  # fmt: skip
        dtype = self.engine_config.model_dtype or ("float32" if not self.engine_config.forward_only else "bfloat16")
        dtype = PrecisionType.to_dtype(dtype)
        init_context = get_init_weight_context_manager(use_meta_tensor=not mc.hf_config.tie_word_embeddings,
                                                       mesh=self.device_mesh)  # fmt: skip
        with init_context(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = R1RQwen2_5_VLForTokenClassification.from_pretrained(mc.local_path, torch_dtype=dtype,
                                                                          config=mc.hf_config)  # fmt: skip
            apply_monkey_patch(model=module, use_remove_padding=self.use_remove_padding,
                               ulysses_sp_size=self.ulysses_sequence_parallel_size)  # fmt: skip
            module.to(dtype)
            if mc.enable_gradient_checkpointing:
                module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return module

    def forward_backward_batch(self, data, loss_function, forward_only=False):
        tu.assign_non_tensor(data, force_group_size=2)  # a pair's two rows stay in one micro-batch, in order
        return super().forward_backward_batch(data, loss_function, forward_only=forward_only)


