"""Learning-rate schedules for the training configs, and the one ``configure_optimizers`` of the project.

:class:`WarmupCosineLR` (linear warm-up, then cosine decay to ``min_lr_ratio * lr``) is given in a
config as ``model.init_args.lr_scheduler`` (a Lightning ``LRSchedulerCallable``: the optimizer is
filled in by the module)::

    lr_scheduler:
      class_path: optim.schedules.WarmupCosineLR
      init_args: {warmup_steps: 5000, total_steps: 500000, min_lr_ratio: 0.1}

It steps once per optimizer step. :func:`optimizers_and_schedule` is what every module's
``configure_optimizers`` returns.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["WarmupCosineLR", "optimizers_and_schedule"]


class WarmupCosineLR(LambdaLR):
    """Linear warm-up from ``warmup_start_ratio * lr`` to ``lr`` over ``warmup_steps``, then cosine
    decay to ``min_lr_ratio * lr`` at ``total_steps`` (held there afterwards).

    Args:
        optimizer: the optimizer (filled in by the module from the config's callable).
        warmup_steps: optimizer steps of linear warm-up (0 = none).
        total_steps: optimizer step where the decay ends (e.g. ``trainer.max_steps``); None keeps
            ``lr`` constant after the warm-up.
        min_lr_ratio: final learning rate as a fraction of ``lr``.
        warmup_start_ratio: first learning rate as a fraction of ``lr``.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        warmup_steps: int = 0,
        total_steps: int | None = None,
        min_lr_ratio: float = 0.0,
        warmup_start_ratio: float = 0.0,
    ) -> None:
        if warmup_steps < 0 or (total_steps is not None and total_steps <= warmup_steps):
            raise ValueError(
                f"WarmupCosineLR: need 0 <= warmup_steps < total_steps, got warmup_steps={warmup_steps}, total_steps={total_steps}"
            )
        if not 0 <= min_lr_ratio <= 1 or not 0 <= warmup_start_ratio <= 1:
            raise ValueError(f"WarmupCosineLR: ratios must be in [0, 1], got {min_lr_ratio}, {warmup_start_ratio}")
        self.warmup_steps, self.total_steps = warmup_steps, total_steps
        self.min_lr_ratio, self.warmup_start_ratio = min_lr_ratio, warmup_start_ratio
        super().__init__(optimizer, self.factor)

    def factor(self, step: int) -> float:
        """Learning-rate multiplier at optimizer step ``step``."""
        if step < self.warmup_steps:
            return self.warmup_start_ratio + (1 - self.warmup_start_ratio) * step / self.warmup_steps
        if self.total_steps is None:
            return 1.0
        progress = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def optimizers_and_schedule(
    params: Iterable[torch.nn.Parameter],
    optimizer: Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer],
    lr_scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
) -> torch.optim.Optimizer | dict[str, Any]:
    """What ``configure_optimizers`` returns: the optimizer, plus its schedule stepped every optimizer step."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("configure_optimizers: no trainable parameters (every part is frozen); check train_stages / freezing options")
    opt = optimizer(params)
    if lr_scheduler is None:
        return opt
    return {"optimizer": opt, "lr_scheduler": {"scheduler": lr_scheduler(opt), "interval": "step", "frequency": 1}}
