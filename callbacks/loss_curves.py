"""``loss_curves.png`` beside ``metrics.csv``: the run's training and validation losses at a glance.

At the end of a fit (and when a fit stops on an exception, e.g. Ctrl-C) every
:class:`lightning.pytorch.loggers.CSVLogger` of the trainer is flushed and its ``metrics.csv`` read
back; each column whose last name part is ``loss`` (``train/loss``, ``val/loss``, the per-stage
``train/s{k}/loss`` and ``val/s{k}/loss`` of C2F; ``*_step`` / ``*_epoch`` variants too) is
plotted against the step, training losses on the left, validation losses on the right. Other
loggers are ignored (W&B and TensorBoard draw their own curves). Only rank 0 plots; a plotting
error is reported as a warning and never fails the run.
"""
from __future__ import annotations

import csv
import math
import re
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

__all__ = ["LossCurves", "plot_loss_curves", "read_loss_series"]

_LOSS = re.compile(r"(^|/)loss(_step|_epoch)?$")


def read_loss_series(metrics_csv: str | Path, pattern: str = _LOSS.pattern) -> dict[str, list[tuple[int, float]]]:
    """``{column: [(step, value), ...]}`` of every column of ``metrics_csv`` matching ``pattern``.

    Rows where a column is empty (not logged at that step) are skipped; non-finite values too.
    """
    regex = re.compile(pattern)
    series: dict[str, list[tuple[int, float]]] = {}
    with open(metrics_csv, newline="") as f:
        reader = csv.DictReader(f)
        columns = [c for c in reader.fieldnames or [] if regex.search(c)]
        for row in reader:
            step = row.get("step")
            if step in (None, ""):
                continue
            for column in columns:
                value = row.get(column)
                if value in (None, ""):
                    continue
                number = float(value)
                if math.isfinite(number):
                    series.setdefault(column, []).append((int(float(step)), number))
    return series


def plot_loss_curves(series: dict[str, list[tuple[int, float]]], path: str | Path, title: str = "") -> Path:
    """Draw ``series`` (from :func:`read_loss_series`) into a PNG at ``path``: train left, validation right.

    The overall losses (``train/loss``, ``val/loss``) are drawn in black, the others (per stage) in
    colour; the y axis is logarithmic when a panel's positive values span more than a factor 20.
    Returns ``path``.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    groups = {
        "training": {k: v for k, v in series.items() if not k.startswith("val")},
        "validation": {k: v for k, v in series.items() if k.startswith("val")},
    }
    fig = Figure(figsize=(11, 4.2), dpi=100, layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, (label, curves) in zip(axes, groups.items()):
        ax.set_title(f"{label} loss")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if not curves:
            ax.text(0.5, 0.5, f"no {label} loss logged", ha="center", va="center", transform=ax.transAxes)
            continue
        for name, points in sorted(curves.items()):
            steps, values = zip(*points)
            overall = name.count("/") <= 1
            ax.plot(steps, values, label=name, marker="o" if len(points) < 30 else None, markersize=3,
                    linewidth=1.6 if overall else 1.1, color="black" if overall else None, alpha=0.7 if overall else 1.0)
        values = [v for points in curves.values() for _, v in points]
        if min(values) > 0 and max(values) > 20 * min(values):
            ax.set_yscale("log")
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    path = Path(path)
    fig.savefig(path)
    return path


class LossCurves(Callback):
    """Write ``loss_curves.png`` (train and validation losses, per stage for C2F) beside each CSV logger's ``metrics.csv`` when a fit ends.

    Args:
        filename: name of the image in the CSV logger's directory.
        pattern: regular expression selecting the metric columns to plot (default: names whose last
            part is ``loss``).
    """

    def __init__(self, filename: str = "loss_curves.png", pattern: str = _LOSS.pattern) -> None:
        super().__init__()
        re.compile(pattern)
        self.filename, self.pattern = filename, pattern
        #: images written at the end of the last fit (for tests and users)
        self.last_paths: list[Path] = []

    @rank_zero_only
    def _draw(self, trainer: Trainer) -> None:
        self.last_paths = []
        for logger in trainer.loggers:
            if not isinstance(logger, CSVLogger):
                continue
            try:
                logger.save()  # rows not yet flushed (the logger flushes every 100 steps and at finalize)
                metrics_csv = Path(logger.experiment.metrics_file_path)
                if not metrics_csv.is_file():
                    continue
                series = read_loss_series(metrics_csv, self.pattern)
                if series:
                    path = plot_loss_curves(series, metrics_csv.with_name(self.filename), title=str(metrics_csv.parent))
                    self.last_paths.append(path)
            except Exception as err:  # a picture must never fail a finished run
                rank_zero_warn(f"LossCurves: could not draw {self.filename} for {logger.log_dir}: {type(err).__name__}: {err}")

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._draw(trainer)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if trainer.state.fn == "fit":
            self._draw(trainer)
