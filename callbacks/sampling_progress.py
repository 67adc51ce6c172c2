"""A progress bar of the DDIM steps inside each predict batch (a 1024 px C2F image takes minutes).

Lightning's predict bar counts the batches (images with ``batch_size: 1``); this one counts the
sampler's steps of the current batch, ``stage k`` in its description. It works with modules that
expose a ``sampling_callback`` attribute and pass it to the sampler in ``predict_step``
(``sample_c2f(..., callback=self.sampling_callback)``, called after every DDIM step with
``{"stage", "i", ...}``); for other modules it does nothing. The total is the sum of the module's
per-stage steps (``model.sampling.steps``) when it has them. Rank 0 only; hidden when the trainer's
progress bar is disabled.
"""
from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from tqdm.auto import tqdm

__all__ = ["SamplingProgress"]


def _total_steps(pl_module: LightningModule) -> int | None:
    steps = getattr(getattr(getattr(pl_module, "model", None), "sampling", None), "steps", None)
    try:
        return int(sum(int(s) for s in steps)) if steps is not None else None
    except TypeError:
        return None


class SamplingProgress(Callback):
    """Show a bar of the sampler's steps (all stages) for every predict batch, under Lightning's bar of images.

    Args:
        leave: keep each finished batch's bar on screen (default: replace it with the next one).
    """

    def __init__(self, leave: bool = False) -> None:
        super().__init__()
        self.leave = leave
        self._bar: tqdm | None = None
        #: steps reported during the last batch (for tests)
        self.last_count = 0

    def _step(self, info: dict) -> None:
        self.last_count += 1
        if self._bar is not None:
            stage = info.get("stage")
            if stage is not None:
                self._bar.set_description(f"sampling stage {stage}", refresh=False)
            self._bar.update(1)

    def on_predict_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not hasattr(pl_module, "sampling_callback") or not trainer.is_global_zero:
            return
        self.last_count = 0
        if trainer.progress_bar_callback is not None:
            self._bar = tqdm(total=_total_steps(pl_module), desc="sampling", unit="step", leave=self.leave,
                             position=1, dynamic_ncols=True)
        pl_module.sampling_callback = self._step

    def on_predict_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._close(pl_module)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._close(pl_module)

    def _close(self, pl_module: LightningModule) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if getattr(pl_module, "sampling_callback", None) == self._step:
            pl_module.sampling_callback = None
