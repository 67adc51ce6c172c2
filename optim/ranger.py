"""Ranger: RAdam + Lookahead (+ gradient centralisation), the optimizer of pSp / e4e / HFGI."""
from __future__ import annotations

from typing import Iterable

import torch


class Ranger(torch.optim.RAdam):
    """RAdam whose weights are pulled towards slow "lookahead" weights every ``k`` steps.

    Every step: optional gradient centralisation (subtract each multi-dimensional gradient's
    mean over all but the first axis), then a RAdam step (the fast weights). Every ``k``-th
    step: ``slow += alpha * (fast - slow)`` and ``fast = slow``. Defaults follow the Ranger used
    by pSp/e4e/HFGI (``betas=(0.95, 0.999)``, ``eps=1e-5``, ``alpha=0.5``, ``k=6``).
    The slow weights live in the optimizer state (``state[p]["slow_buffer"]``), so checkpoints
    resume exactly.

    Args:
        params: parameters or parameter groups.
        lr: learning rate.
        alpha: lookahead interpolation factor in (0, 1].
        k: lookahead synchronisation period (steps).
        betas: RAdam moment coefficients.
        eps: RAdam epsilon.
        weight_decay: L2 weight decay (RAdam's coupled form).
        use_gc: apply gradient centralisation to conv/linear weights.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        alpha: float = 0.5,
        k: int = 6,
        betas: tuple[float, float] = (0.95, 0.999),
        eps: float = 1e-5,
        weight_decay: float = 0.0,
        use_gc: bool = True,
    ) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"Ranger alpha must be in (0, 1], got {alpha}")
        if k < 1:
            raise ValueError(f"Ranger k must be >= 1, got {k}")
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        for group in self.param_groups:
            group["alpha"] = alpha
            group["k"] = k
            group["use_gc"] = use_gc
            group.setdefault("lookahead_step", 0)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D401 - torch signature
        """One optimisation step (see the class docstring)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        initial = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if "slow_buffer" not in self.state[p]:
                    initial[p] = p.detach().clone()  # slow weights start at the initial point
                if group["use_gc"] and p.grad.ndim > 1:
                    p.grad.sub_(p.grad.mean(dim=tuple(range(1, p.grad.ndim)), keepdim=True))
        super().step()
        for p, w0 in initial.items():
            self.state[p]["slow_buffer"] = w0  # added after RAdam initialised its own state
        for group in self.param_groups:
            group["lookahead_step"] += 1
            if group["lookahead_step"] % group["k"]:
                continue
            for p in group["params"]:
                slow = self.state[p].get("slow_buffer")
                if slow is None:
                    continue
                slow.add_(p - slow, alpha=group["alpha"])
                p.copy_(slow)
        return loss
