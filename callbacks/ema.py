"""Exponential moving average of the module's weights, a thin layer over Lightning's ``WeightAveraging``.

Lightning (>= 2.6) ships :class:`lightning.pytorch.callbacks.WeightAveraging`, which keeps an
``AveragedModel`` copy, swaps the averaged weights in for every validation epoch (so validation
losses and the :class:`callbacks.image_logger.ImageLogger` samples use them), copies them into
the module when fitting ends, and writes checkpoints whose ``state_dict`` holds the AVERAGED
weights (the raw ones go to ``current_model_state``; resuming restores both). This class only
adds the usual diffusion EMA decay with warm-up:
``decay_n = min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so short runs and early
validations are not dominated by the random initialisation.

Config::

    trainer:
      callbacks:
        - class_path: callbacks.ema.EMA
          init_args: {decay: 0.9999, warmup: true}
"""
from __future__ import annotations

from typing import Optional

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import WeightAveraging

__all__ = ["EMA", "EMADecay"]


class EMADecay:
    """``avg_fn`` for ``torch.optim.swa_utils.AveragedModel``: EMA with optional warm-up.

    Args:
        decay: the EMA decay once warmed up.
        warmup: use ``min(decay, (1 + n) / (10 + n))`` after ``n`` averaged updates.
    """

    def __init__(self, decay: float, warmup: bool) -> None:
        self.decay, self.warmup = decay, warmup

    def __call__(self, averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        n = float(num_averaged)
        d = min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay
        return averaged + (current - averaged) * (1 - d)


class EMA(WeightAveraging):
    """EMA of all parameters and buffers, used for validation/sampling and saved in checkpoints.

    Args:
        decay: EMA decay in (0, 1) (e.g. 0.9999 for long runs, ~0.99 for tiny ones).
        warmup: ramp the decay as ``min(decay, (1 + n) / (10 + n))``.
        update_every_n_steps: update the average every this many optimizer steps.
        start_step: first optimizer step (0-based) that updates the average (before it the
            average follows the weights exactly: its first update is a copy).
        device: keep the averaged copy on this device (e.g. ``"cpu"`` to save GPU memory);
            None keeps it with the module.
    """

    def __init__(
        self,
        decay: float = 0.9999,
        warmup: bool = True,
        update_every_n_steps: int = 1,
        start_step: int = 0,
        device: Optional[str] = None,
    ) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA: decay must be in (0, 1), got {decay}")
        if update_every_n_steps < 1 or start_step < 0:
            raise ValueError(
                f"EMA: update_every_n_steps must be >= 1 and start_step >= 0, got {update_every_n_steps}, {start_step}"
            )
        super().__init__(device=device, use_buffers=True, avg_fn=EMADecay(decay, warmup))
        self.decay, self.warmup = decay, warmup
        self.update_every_n_steps, self.start_step = update_every_n_steps, start_step

    def should_update(self, step_idx: Optional[int] = None, epoch_idx: Optional[int] = None) -> bool:
        """Update after optimizer steps ``start_step, start_step + k, ...`` (never at epoch ends)."""
        return step_idx is not None and step_idx >= self.start_step and (step_idx - self.start_step) % self.update_every_n_steps == 0

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Build the averaged copy, sharing (not copying) the module's plain callables.

        ``WeightAveraging`` deep-copies the whole LightningModule. Callables kept as attributes,
        such as the optimizer factory LightningCLI passes in (it holds the CLI's instantiation
        context, which cannot be copied under DDP), carry no weights: they are detached for the
        copy and the same objects are set on both modules.
        """
        shared = {
            name: value
            for name, value in vars(pl_module).items()
            if callable(value) and not isinstance(value, (torch.nn.Module, torch.Tensor))
        }
        for name in shared:
            setattr(pl_module, name, None)
        try:
            super().setup(trainer, pl_module, stage)
        finally:
            for name, value in shared.items():
                setattr(pl_module, name, value)
                if self._average_model is not None:
                    setattr(self._average_model.module, name, value)
