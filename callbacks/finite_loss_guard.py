"""Stop training at the first non-finite loss, before it reaches the weights or a checkpoint."""
from __future__ import annotations

import math
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

__all__ = ["FiniteLossGuard", "NonFiniteLossError"]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or Inf."""


class FiniteLossGuard(Callback):
    """Raise :class:`NonFiniteLossError` when the loss of a training step is NaN or Inf.

    Checked before the backward pass, so the optimizer never applies the step and the weights (and
    ``last.ckpt``, written by :class:`callbacks.last_checkpoint.LastCheckpoint`) keep the last finite
    state. The message names the step and every loss term that is not finite (modules put their
    per-sample terms in ``pl_module.last_loss_terms``). Under DDP the ranks agree on the decision
    (one tiny all-reduce per step), so all stop together instead of hanging.
    """

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        bad = not bool(torch.isfinite(loss.detach()).all())
        if not trainer.strategy.reduce_boolean_decision(bad, all=False):
            return
        terms = getattr(pl_module, "last_loss_terms", None) or {}
        offending = []
        for name, value in terms.items():
            value = torch.as_tensor(value).detach().float()
            if not bool(torch.isfinite(value).all()):
                offending.append(f"{name}={_describe(value)}")
        where = f"the loss is {_describe(loss.detach().float())}" if bad else "the loss is non-finite on another rank"
        detail = f"; non-finite terms: {', '.join(offending)}" if offending else ""
        raise NonFiniteLossError(
            f"training stopped at step {trainer.global_step}: {where}{detail}. The weights and last.ckpt keep the last "
            "finite state (this step was not applied). Lower the learning rate, enable gradient clipping "
            "(trainer.gradient_clip_val), or check the data of this batch."
        )


def _describe(value: torch.Tensor) -> str:
    flat = value.reshape(-1)
    nan, inf = int(torch.isnan(flat).sum()), int(torch.isinf(flat).sum())
    if flat.numel() == 1:
        v = float(flat[0])
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return f"{nan} NaN / {inf} Inf of {flat.numel()} samples"
