"""A Lightning callback that records what a benchmark needs from a real ``python -m main fit`` run.

:class:`StepProbe` extends :class:`benchmarks.train_throughput.StepTimer` (per-step wall times
after warm-up, CUDA-synchronised, peak-memory counter reset when the timed steps begin) with:

- the FLOPs of one whole training step (forward, backward and optimizer step of the batch at
  index ``flop_step``), counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls,
  convolutions and attention kernels; recomputation by gradient checkpointing is included);
- ``torch.cuda.max_memory_allocated`` over the timed steps;
- the distributed backend and world size when the strategy started a process group;
- the modules :class:`benchmarks.train_throughput.CompileCalledModules` compiled, if it ran.

It is added on the command line, so the measured run is the CLI's own run::

    python -m main fit --config configs/lcg/tiny.yaml \\
        '--trainer.callbacks+={"class_path": "benchmarks.step_probe.StepProbe", "init_args": {"out": "probe.json"}}'

When fit ends, global rank 0 writes ``out`` (JSON).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.train_throughput import CompileCalledModules, StepTimer

__all__ = ["StepProbe"]


class StepProbe(StepTimer):
    """Step times after warm-up, FLOPs of one step, peak CUDA memory and the process group, written to JSON.

    Args:
        out: JSON file written by global rank 0 when fit ends.
        warmup: untimed steps first (compilation and allocator warm-up happen there).
        flop_step: index of the step whose FLOPs are counted (a warm-up step, so counting does not
            perturb the timing; step 0 always runs eager); None = do not count.
    """

    def __init__(self, out: str, warmup: int = 3, flop_step: int | None = 0) -> None:
        super().__init__(warmup)
        if flop_step is not None and not 0 <= flop_step < max(warmup, 1):
            raise ValueError(f"StepProbe: flop_step={flop_step} must be a warm-up step (0 <= flop_step < warmup={warmup})")
        self.out = Path(out)
        self.flop_step = flop_step
        self.flops: int | None = None
        self._counter: FlopCounterMode | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
        if self.flop_step is not None and len(self.durations) == self.flop_step:
            self._counter = FlopCounterMode(display=False)
            self._counter.__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            self.flops = int(self._counter.get_total_flops())
            self._counter = None
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_end(self, trainer, pl_module) -> None:
        if self._counter is not None:  # the run ended inside the counted step
            self._counter.__exit__(None, None, None)
            self._counter = None
        if not trainer.is_global_zero:
            return
        dist = None
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            dist = {"backend": str(torch.distributed.get_backend()), "world_size": torch.distributed.get_world_size()}
        cuda = pl_module.device.type == "cuda"
        compiled = next((cb.compiled for cb in trainer.callbacks if isinstance(cb, CompileCalledModules)), None)
        report = {
            "durations_s": self.durations,
            "images": self.images,
            "warmup": self.warmup,
            "warmup_s": self.warmup_seconds,
            "flops_per_step": self.flops,
            "flop_step": self.flop_step,
            "peak_memory_bytes": torch.cuda.max_memory_allocated(pl_module.device) if cuda else None,
            "device": torch.cuda.get_device_name(pl_module.device) if cuda else pl_module.device.type,
            "precision": str(trainer.precision),
            "strategy": type(trainer.strategy).__name__,
            "distributed": dist,
            "global_step": trainer.global_step,
            "trainable_params": sum(p.numel() for p in pl_module.parameters() if p.requires_grad),
            "compiled": compiled,
        }
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(report, indent=2))
