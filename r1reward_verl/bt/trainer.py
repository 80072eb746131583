"""verl's SFT trainer, subclassed to train the Bradley-Terry reward model.

    torchrun --nproc_per_node 8 -m r1reward_verl.bt.trainer --config-path hydra_configs --config-name r1reward_bt \\
        model.path=Qwen/Qwen2.5-VL-7B-Instruct data.train_files=... data.val_files=...

verl has no trainer registry (``verl/trainer/sft_trainer.py``'s ``run_sft`` constructs ``SFTTrainer``), so this
module is the entry point. What differs from verl's SFT run: the engine (``model_type="bt_reward_model"``,
:mod:`.engine`), the loss (:func:`~r1reward_verl.bt.loss.bt_loss`), the collator (pairs, :mod:`.dataset`) and the
per-step metrics reduced to numbers. The loop, FSDP, checkpoints and resume, the HF export and the loggers are
verl's. The dataset is ``data.custom_cls`` in the config.
"""

from __future__ import annotations

from functools import partial

import hydra
import numpy as np
from verl.trainer.sft_trainer import SFTTrainer
from verl.utils import tensordict_utils as tu
from verl.utils.distributed import destroy_global_process_group, initialize_global_process_group
from verl.utils.metric import Metric
from verl.workers.engine_workers import TrainingWorker, TrainingWorkerConfig

from r1reward_verl.bt import engine as _engine  # noqa: F401  (registers the engine)
from r1reward_verl.bt.dataset import PairCollator
from r1reward_verl.bt.engine import MODEL_TYPE
from r1reward_verl.bt.loss import bt_loss


def _leaves(value):
    if isinstance(value, (list, tuple)):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def reduce_metric(value) -> float:
    """A metric as verl's worker returns it (per micro-batch and dp rank lists, ``Metric``s or numbers) -> one
    number: the ``Metric``s merged then aggregated (so a mean is over every pair), else the mean."""
    leaves = list(_leaves(value))
    metrics = [v for v in leaves if isinstance(v, Metric)]
    if metrics:
        merged = Metric(metrics[0].aggregation)
        for m in metrics:
            merged.extend(m)
        return float(merged.aggregate())
    return float(np.mean([float(v) for v in leaves])) if leaves else float("nan")


class BTTrainingWorker(TrainingWorker):
    def _postprocess_output(self, output, **kwargs):
        out = super()._postprocess_output(output, **kwargs)
        metrics = tu.get(out, "metrics")
        tu.assign_non_tensor(out, metrics={k: reduce_metric(v) for k, v in metrics.items()})
        return out


class BTTrainer(SFTTrainer):
    def _build_engine(self):
        self.loss_fn = partial(bt_loss, config=None)
        config = TrainingWorkerConfig(model_type=MODEL_TYPE, model_config=self.model_config,
                                      engine_config=self.engine_config, optimizer_config=self.optimizer_config,
                                      checkpoint_config=self.checkpoint_config, profiler_config=self.profiler_config)  # fmt: skip
        self.training_client = BTTrainingWorker(config=config)
        self.training_client.set_loss_fn(loss_fn=self.loss_fn)
        self.engine = self.training_client.engine

    def _build_dataloader(self):
        super()._build_dataloader()
        self.collate_fn = PairCollator(self.config.data.pad_mode)
        self.train_dataloader.collate_fn = self.collate_fn
        if self.val_dataloader is not None:
            self.val_dataloader.collate_fn = self.collate_fn


def run_bt(config) -> None:
    initialize_global_process_group()
    BTTrainer(config=config).fit()
    destroy_global_process_group()


@hydra.main(config_path=None, config_name=None, version_base=None)
def main(config) -> None:
    from verl.utils.device import auto_set_device

    auto_set_device(config)
    run_bt(config)


if __name__ == "__main__":
    main()
