"""The scalar reward model: Qwen2.5-VL's backbone and a two-layer MLP head read at the last token.

Importing this module registers the class with ``AutoModelForTokenClassification`` (verl's checkpoint manager
exports ``*ForTokenClassification`` architectures through that auto class) and with transformers' checkpoint
conversion: Qwen/Qwen2.5-VL-* checkpoints name their weights ``model.layers.*`` / ``visual.*``; without the
conversion registered for this class they would not be found and the backbone would load random, silently.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModelForTokenClassification, Qwen2_5_VLConfig
from transformers.conversion_mapping import get_checkpoint_conversion_mapping, register_checkpoint_conversion_mapping
from transformers.modeling_outputs import TokenClassifierOutput
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel, Qwen2_5_VLPreTrainedModel

ARCHITECTURE = "R1RQwen2_5_VLForTokenClassification"


class R1RQwen2_5_VLForTokenClassification(Qwen2_5_VLPreTrainedModel):
    """Qwen2.5-VL + ``score``: Linear(h, m) -> SiLU -> Linear(m, 1) on every position's final hidden state
    (``logits``: (batch, tokens, 1)); the reward of a sequence is the value at its last token
    (:func:`last_token_rewards`). ``m`` is ``config.bt_head_hidden`` (default h). The last layer starts at zero,
    so every reward starts at 0 and the Bradley-Terry loss at ln 2."""

    def __init__(self, config: Qwen2_5_VLConfig):
        super().__init__(config)
        hidden = config.text_config.hidden_size
        mid = int(getattr(config, "bt_head_hidden", None) or hidden)
        self.model = Qwen2_5_VLModel(config)
        self.score = nn.Sequential(nn.Linear(hidden, mid), nn.SiLU(), nn.Linear(mid, 1))
        config.architectures = [ARCHITECTURE]
        self.post_init()

    def _init_weights(self, module):
        super()._init_weights(module)
        if module is getattr(self, "score", None):
            nn.init.zeros_(module[2].weight)
            nn.init.zeros_(module[2].bias)

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, pixel_values=None, image_grid_thw=None,
                **kwargs) -> TokenClassifierOutput:  # fmt: skip
        if position_ids is not None and position_ids.dim() == 3 and position_ids.shape[0] == 4:
            # verl's (4, batch, tokens): a text position row and the three mrope rows
            from verl.models.transformers.qwen2_vl import process_position_ids

            position_ids = process_position_ids(position_ids)
        kwargs.pop("labels", None)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         pixel_values=pixel_values, image_grid_thw=image_grid_thw, **kwargs)  # fmt: skip
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        return TokenClassifierOutput(logits=self.score(hidden))


def last_token_rewards(logits: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(batch,) rewards: the head's value at each row's last non-pad token (right or left padding)."""
    idx = attention_mask.shape[1] - 1 - attention_mask.flip(1).long().argmax(1)
    return logits.squeeze(-1)[torch.arange(len(idx), device=logits.device), idx].float()


def _register() -> None:
    try:
        AutoModelForTokenClassification.register(Qwen2_5_VLConfig, R1RQwen2_5_VLForTokenClassification)
    except ValueError:  # registered already (a reload)
        pass
    if get_checkpoint_conversion_mapping(ARCHITECTURE) is None:
        register_checkpoint_conversion_mapping(ARCHITECTURE,
                                               get_checkpoint_conversion_mapping("Qwen2_5_VLForConditionalGeneration"))


_register()
