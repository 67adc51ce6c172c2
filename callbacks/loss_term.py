"""Base class for loss terms that a callback adds to a LightningModule's training loss.

A config adds, removes or re-weights a term by listing the callback under
``trainer.callbacks``; the module's code does not change. The module must mix in
:class:`lightning_modules.loss_term_host.LossTermHost` and call
``self.extra_loss_terms(ctx)`` from its training step.
"""
from __future__ import annotations

from typing import Mapping

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class LossTerm(Callback):
    """A weighted loss term that registers itself with the module at setup."""

    #: short name used in the logged metric (``train/<prefix><name>``); subclasses set it
    name: str = "term"
    #: context keys the term reads; the host module must provide them (``LossTermHost.loss_term_inputs``)
    requires: frozenset[str] = frozenset()

    def __init__(self, weight: float = 1.0) -> None:
        """
        Args:
            weight: multiplier of this term in the total training loss.
        """
        super().__init__()
        if weight < 0:
            raise ValueError(f"{type(self).__name__}: weight must be >= 0, got {weight}")
        self.weight = float(weight)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        register = getattr(pl_module, "register_loss_term", None)
        if register is None:
            raise TypeError(
                f"{type(self).__name__} needs a module that mixes in LossTermHost; "
                f"{type(pl_module).__name__} does not. Remove the callback from trainer.callbacks "
                "or use a module that supports loss-term callbacks."
            )
        register(self)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        unregister = getattr(pl_module, "unregister_loss_term", None)
        if unregister is not None:
            unregister(self)

    def compute(self, ctx: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        """Per-sample loss of shape (B,), or None when it does not apply to this step (e.g. no condition at stage 0)."""
        raise NotImplementedError
