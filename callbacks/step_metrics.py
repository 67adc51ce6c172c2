"""Step metrics that a training step logs only sometimes are written only at the steps that logged them.

Lightning keeps the last value of every metric logged from ``training_step`` for the rest of the
epoch and hands all of them to the loggers at every logging step. A metric logged conditionally
(C2F trains one sampled stage per step and logs ``train/s{k}/*`` for that stage only) therefore
reappears with its old value at steps where it was not computed: ``metrics.csv`` showed
``train/s1/loss`` at steps that trained stage 0. This callback forgets, before each training batch,
the values of the step-only (``on_step=True, on_epoch=False``, the default in ``training_step``)
tensor metrics of ``training_step``; what the step logs again is written as before, what it does not log
is absent from that step's row. Epoch-level metrics (``on_epoch=True``) keep accumulating untouched.

It reaches into Lightning's result collection (``trainer._results``, no public API exists for
this); when that structure is not found it warns once and does nothing.
"""
from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn

__all__ = ["StepOnlyMetrics"]


class StepOnlyMetrics(Callback):
    """Log a step-only ``training_step`` metric only at the steps that computed it (no stale repeats).

    The main CLI adds it to every trainer.
    """

    def __init__(self) -> None:
        self._warned = False

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        results = getattr(trainer, "_results", None)
        try:
            items = list(results.items()) if results is not None else []
            for _, metric in items:
                meta = metric.meta
                # tensors only: resetting a torchmetrics.Metric would also clear the user's metric state
                if metric.is_tensor and meta.fx == "training_step" and meta.on_step and not meta.on_epoch:
                    metric.reset()
        except AttributeError as err:  # another Lightning version: keep training, say what is lost
            if not self._warned:
                self._warned = True
                rank_zero_warn(
                    f"StepOnlyMetrics: this Lightning version's result collection has no {err.name!r}; metrics that a "
                    "training step logs only sometimes (e.g. train/s{k}/* of C2F) repeat their last value at other steps"
                )
