"""restorelab entry point: ``python -m main {fit,validate,test,predict} --config configs/x.yaml``.

Every LightningModule and LightningDataModule of the project is chosen by
``class_path`` in the config (LightningCLI subclass mode). Several ``--config``
files compose left to right; ``--model.init_args.x=v`` overrides one value.
"""
from __future__ import annotations

import sys

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger
from jsonargparse import lazy_instance


class RestoreLabCLI(LightningCLI):
    """LightningCLI with the project's trainer defaults: checkpoints (last + best), LR monitor, a run directory per run."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/loss",
                "checkpoint.mode": "min",
                "checkpoint.save_last": True,
                "checkpoint.save_top_k": 1,
                "checkpoint.auto_insert_metric_name": False,
                "checkpoint.filename": "best-{epoch:03d}-{step:07d}",
            }
        )
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "step"})

    def before_instantiate_classes(self) -> None:
        if torch.cuda.is_available():
            torch.set_float32_matmul_precision("high")


def cli_main(args: list[str] | None = None, run: bool = True) -> RestoreLabCLI:
    """Build (and by default run) the CLI; ``args`` replaces ``sys.argv[1:]`` (used by tests)."""
    return RestoreLabCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_defaults={
            "logger": lazy_instance(CSVLogger, save_dir="runs", name="default"),
            "log_every_n_steps": 10,
        },
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
        args=args,
        run=run,
    )


if __name__ == "__main__":
    cli_main(sys.argv[1:] if len(sys.argv) > 1 else None)
