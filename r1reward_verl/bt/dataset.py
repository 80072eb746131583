"""The chosen and rejected of a pair, both with the pair's images, as two rows of one batch.

``data.custom_cls`` of verl's SFT trainer (``hydra_configs/r1reward_bt.yaml``): :class:`BTPairDataset` is two
of verl's ``MultiTurnSFTDataset`` over the same parquet, one reading ``data.chosen_key``, one
``data.rejected_key`` (a user turn with the question and its ``<image>`` placeholders, an assistant turn with
the response), so tokens, images, mrope positions and truncation are verl's. The parquet is what
``preprocess.pairs --bt-out`` writes. :class:`PairCollator` lays a batch of pairs out as rows
``[chosen_0, rejected_0, chosen_1, ...]`` for verl's own collator; the engine keeps each pair in one
micro-batch (``force_group_size=2``, :mod:`.engine`).
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset
from verl.utils.dataset.dataset_utils import SFTTensorCollator
from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

ROLES = ("chosen", "rejected")


def _view(config, messages_key: str):
    cfg = OmegaConf.create(OmegaConf.to_container(config, resolve=True)) if isinstance(config, DictConfig) else dict(config)
    cfg["messages_key"] = messages_key
    return cfg


class BTPairDataset(Dataset):
    """Pairs -> ``{"chosen": row, "rejected": row}``; each row is ``MultiTurnSFTDataset``'s item with
    ``loss_mask`` one at its last token only (the token the reward is read at; the loss counts pairs,
    not tokens) and ``pair_role`` 0 (chosen) / 1 (rejected)."""

    def __init__(self, parquet_files, tokenizer, config, processor=None, max_samples: int = -1):
        keys = {r: config.get(f"{r}_key", f"{r}_messages") for r in ROLES}
        self.sides = {r: MultiTurnSFTDataset(parquet_files=parquet_files, tokenizer=tokenizer, config=_view(config, k),
                                             processor=processor, max_samples=max_samples)
                      for r, k in keys.items()}  # fmt: skip
        if len(self.sides["chosen"]) != len(self.sides["rejected"]):
            raise ValueError(f"{parquet_files}: {len(self.sides['chosen'])} chosen but {len(self.sides['rejected'])} rejected rows")

    def __len__(self) -> int:
        return len(self.sides["chosen"])

    def __getitem__(self, i: int) -> dict:
        out = {}
        for role_id, role in enumerate(ROLES):
            row = dict(self.sides[role][i])
            mask = torch.zeros_like(row["input_ids"])
            mask[-1] = 1
            row["loss_mask"] = mask
            row["pair_role"] = torch.tensor([role_id])
            out[role] = row
        return out


class PairCollator:
    """A list of pairs -> verl's collated batch of rows ``[c0, r0, c1, r1, ...]``."""

    def __init__(self, pad_mode):
        self.collate = SFTTensorCollator(pad_mode)

    def __call__(self, pairs: list[dict]) -> dict:
        return self.collate([p[role] for p in pairs for role in ROLES])
