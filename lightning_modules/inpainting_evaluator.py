"""InpaintingEvaluator: FID / LPIPS / PSNR / SSIM of any inpainter over a fixed evaluation set (``test``).

    python -m main test --config configs/eval/places2_mat_large.yaml --ckpt_path runs/c2f/.../last.ckpt

``--ckpt_path`` is the *inpainter's* checkpoint. Lightning hands it to
:meth:`InpaintingEvaluator.on_load_checkpoint` before testing, which uses it in one of two ways:

- ``model.init_args.inpainter: null`` (the ``configs/eval/*`` default): the inpainter is built from
  the file by ``ckpt_inpainter(<ckpt_path>)`` -- an ``Inpainter`` class (``class_path``) whose first
  argument is the checkpoint, with its other arguments in ``init_args`` (type-checked by the CLI);
  by default ``inpainters.c2f.C2FInpainter``, which rebuilds the C2F model from the
  ``c2f_model`` entry (architecture and sampler settings) stored in its training checkpoint.
- an inpainter configured in ``model.init_args.inpainter``: its weights are taken out of the
  checkpoint's ``state_dict`` (:func:`evaluation.inpainter_checkpoint.inpainter_state_from_checkpoint`:
  a training module's checkpoint, a previous evaluator's, or an official Lightning one).

The evaluator's own metric networks are never read from the checkpoint. Inpainters with a
``checkpoint`` init argument (``inpainters.lama.LamaInpainter``, ``inpainters.c2f.C2FInpainter``)
can also load their weights themselves; then leave ``--ckpt_path`` out.

Outputs (rank 0), in ``report_dir`` (default ``<run directory>/eval``): ``report.json``,
``report.csv``, ``per_image.csv`` (:mod:`evaluation.report`) and ``samples_XX.png`` labelled grids
(masked input | inpainted | original, one row per image). Logged: ``test/fid``, ``test/lpips``,
``test/psnr``, ``test/ssim``, ``test/num_images``; the grids (``test/samples_XX``) and the per-image
table (``test/per_image``) also go to every W&B / TensorBoard logger (:mod:`evaluation.log_media`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import torch
from lightning.pytorch import LightningModule

from callbacks.run_directory import run_directory
from evaluation.feature_extractors import FeatureExtractor, InceptionFeatures
from evaluation.grids import masked_view
from evaluation.inpainter_checkpoint import inpainter_state_from_checkpoint
from evaluation.log_media import log_table, save_grid
from evaluation.metrics import InpaintingMetrics
from evaluation.report import PAPER_BENCHMARKS, PER_IMAGE_COLUMNS, write_report
from evaluation.rows import check_unique, gather_rows
from evaluation.weights import build_lpips
from inpainters.base import Inpainter, composite_known
from inpainters.c2f import C2FInpainter
from masks.random import key_seed

__all__ = ["InpaintingEvaluator"]


class InpaintingEvaluator(LightningModule):
    """Evaluate an inpainter (``forward(image, mask) -> image``, [-1, 1], hole = 1) with FID, LPIPS, PSNR, SSIM.

    Expects batches with ``image`` ``(B,3,H,W)``, ``mask`` ``(B,1,H,W)`` and ``key`` (list of str),
    e.g. from :class:`datamodules.eval_data.EvalDataModule`, where every sample is seen exactly once
    over all ranks. The output is composited with the known pixels before scoring. Figures are
    reduced over all ranks; the per-image rows are gathered to rank 0, which checks that no sample
    was evaluated twice.

    Args:
        inpainter: the inpainter to evaluate (an ``inpainters.base.Inpainter``: ``forward(image, mask) -> image``,
            e.g. ``inpainters.lama.LamaInpainter`` or ``inpainters.c2f.C2FInpainter``). ``None``:
            built from ``--ckpt_path`` with ``ckpt_inpainter``.
        ckpt_inpainter: builds the inpainter from ``--ckpt_path`` when ``inpainter`` is None: an
            ``Inpainter`` class whose first argument is the checkpoint path (``class_path``), its other
            arguments in ``init_args`` (e.g. C2F ``steps``, ``gains``, ``category``, ``seed``);
            ``None`` = ``inpainters.c2f.C2FInpainter`` with its defaults.
        name: label of the inpainter in the report (default: its class name).
        benchmark: which column of the seed paper's table this protocol reproduces
            (``places2_mat_large``, ``places2_mat_small``, ``celebahq``) so the report carries the
            reference rows; ``None`` for other protocols.
        fid_features: FID feature extractor (uint8 images in, ``(N, num_features)`` out);
            ``None`` = the standard InceptionV3 pool3 features read from ``weights_dir``.
            Tests / CI use ``evaluation.feature_extractors.RandomConvFeatures``.
        lpips_net: LPIPS backbone: ``alex`` (standard for inpainting papers), ``vgg`` or ``squeeze``.
        lpips_pretrained_backbone: ``False`` uses a random backbone (tests / CI only; the LPIPS
            values are then not comparable to any paper).
        weights_dir: directory of the metric weight files; ``None`` = ``$TORCH_HOME/hub/checkpoints``
            (see ``docs/evaluation.md`` for the exact files).
        checkpoint_prefix: prefix of the inpainter's keys in ``--ckpt_path``'s ``state_dict``;
            ``None`` finds it (see ``evaluation/inpainter_checkpoint.py``).
        num_grid_images: how many images (from rank 0's first batches) go into sample grids.
        grid_rows_per_file: images (grid rows) per grid PNG.
        report_dir: where the report is written; ``None`` = ``<run directory>/eval``.
        seed: base seed of the inpainter's randomness; each batch is seeded from it and the batch's
            sample keys, so a diffusion inpainter draws the same noise for the same batch every run.
    """

    #: ``--ckpt_path`` is the inpainter's checkpoint (a training run's), not this module's (cli/checkpoint_args.py)
    ckpt_path_holds_other_models = True

    def __init__(
        self,
        inpainter: Inpainter | None = None,
        ckpt_inpainter: Callable[[str], Inpainter] | None = None,
        name: str | None = None,
        benchmark: str | None = None,
        fid_features: FeatureExtractor | None = None,
        lpips_net: str = "alex",
        lpips_pretrained_backbone: bool = True,
        weights_dir: str | None = None,
        checkpoint_prefix: str | None = None,
        num_grid_images: int = 8,
        grid_rows_per_file: int = 4,
        report_dir: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if benchmark is not None and benchmark not in PAPER_BENCHMARKS:
            raise ValueError(
                f"InpaintingEvaluator: benchmark={benchmark!r} is not a column of the paper's table "
                f"{PAPER_BENCHMARKS}; use one of them or null"
            )
        if num_grid_images < 0 or grid_rows_per_file < 1:
            raise ValueError("InpaintingEvaluator: num_grid_images must be >= 0 and grid_rows_per_file >= 1")
        self.inpainter = inpainter
        self.ckpt_inpainter = ckpt_inpainter if ckpt_inpainter is not None else C2FInpainter
        self._name = name
        self.benchmark = benchmark
        if fid_features is None:
            fid_features = InceptionFeatures(2048, weights_dir)
        self.metrics = InpaintingMetrics(fid_features, build_lpips(lpips_net, lpips_pretrained_backbone, weights_dir))
        inception_pool3 = isinstance(fid_features, InceptionFeatures) and fid_features.num_features == 2048
        self.comparable_to_paper = inception_pool3 and lpips_pretrained_backbone and lpips_net == "alex"
        self.settings: dict[str, Any] = {
            "fid_features": f"{type(fid_features).__name__}({fid_features.num_features})",
            "lpips_net": lpips_net,
            "lpips_pretrained_backbone": lpips_pretrained_backbone,
            "checkpoint_prefix": checkpoint_prefix,
            "seed": seed,
        }
        self.checkpoint_prefix = checkpoint_prefix
        self.num_grid_images = num_grid_images
        self.grid_rows_per_file = grid_rows_per_file
        self.report_dir = report_dir
        self.seed = seed
        self._rows: list[dict[str, Any]] = []
        self._grid_images: list[tuple[str, list[torch.Tensor]]] = []

    @property
    def name(self) -> str:
        """Label of the inpainter in the report."""
        return self._name or type(self.inpainter).__name__

    # ----------------------------------------------------------------- checkpoint
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Build the inpainter from ``--ckpt_path`` (``inpainter`` None) or take its weights out of it;
        the evaluator's metric networks keep their own weights."""
        trainer = self._trainer
        source = str(trainer.ckpt_path) if trainer is not None and trainer.ckpt_path else None
        if self.inpainter is None:
            if source is None:
                raise ValueError("InpaintingEvaluator: inpainter is null and the checkpoint has no file path to build it from")
            self.inpainter = self._build_inpainter_from(source)
            checkpoint["state_dict"] = self.state_dict()
        else:
            state = inpainter_state_from_checkpoint(
                checkpoint, self.inpainter, self.checkpoint_prefix, source=source or "--ckpt_path"
            )
            full = self.state_dict()
            full.update({f"inpainter.{k}": v for k, v in state.items()})
            checkpoint["state_dict"] = full
        self.settings["checkpoint"] = source

    def _build_inpainter_from(self, path: str) -> Inpainter:
        inpainter = self.ckpt_inpainter(path)
        if not isinstance(inpainter, Inpainter):
            raise TypeError(f"InpaintingEvaluator: ckpt_inpainter built a {type(inpainter).__name__}, not an "
                            "inpainters.base.Inpainter; give an Inpainter class whose first argument is the checkpoint")
        return inpainter

    def _require_inpainter(self) -> Inpainter:
        if self.inpainter is None:
            builder = getattr(self.ckpt_inpainter, "func", self.ckpt_inpainter)
            raise ValueError(
                "InpaintingEvaluator has no inpainter: pass the inpainter's checkpoint with --ckpt_path "
                f"(built with {getattr(builder, '__qualname__', builder)}) or configure model.init_args.inpainter"
            )
        return self.inpainter

    # ----------------------------------------------------------------- test loop
    def on_test_epoch_start(self) -> None:
        self.metrics.reset()
        self._rows, self._grid_images = [], []
        self._require_inpainter().eval()

    def _batch_seed(self, keys: list[str]) -> int:
        return key_seed("|".join(keys), self.seed)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        image, mask, keys = batch["image"], batch["mask"], list(batch["key"])
        torch.manual_seed(self._batch_seed(keys))
        hole = (mask > 0.5).to(image.dtype)
        out = self.inpainter(image, hole)
        if out.shape != image.shape:
            raise RuntimeError(
                f"{self.name} returned shape {tuple(out.shape)} for input {tuple(image.shape)}; "
                "an inpainter must return an image of the input's shape"
            )
        out = composite_known(out.float().clamp(-1, 1), image.float(), hole)  # known pixels exact, whatever the inpainter did
        per_image = self.metrics.update(out, image.float())
        columns = {"hole_ratio": hole.flatten(1).mean(1).tolist(), **{k: v.tolist() for k, v in per_image.items()}}
        for i, key in enumerate(keys):
            self._rows.append({"key": key, **{name: values[i] for name, values in columns.items()}})
        if self.global_rank == 0 and len(self._grid_images) < self.num_grid_images:
            take = min(self.num_grid_images - len(self._grid_images), image.shape[0])
            for i in range(take):
                images = [masked_view(image[i], hole[i]), out[i], image[i]]
                self._grid_images.append((keys[i], [t.float().cpu() for t in images]))

    def on_test_epoch_end(self) -> None:
        figures = self.metrics.compute()
        rows = gather_rows(self._rows)
        num_images = len(rows)
        for key, value in figures.items():
            self.log(f"test/{key}", value, sync_dist=True)  # already global: identical on every rank
        self.log("test/num_images", float(num_images), sync_dist=True)
        check_unique(rows, ("key",), "InpaintingEvaluator")  # every rank holds all rows: all raise together
        if self.global_rank != 0:
            return
        out_dir = self._report_dir()
        settings = {
            "inpainter": type(self.inpainter).__name__,
            "inpainter_checkpoint": getattr(self.inpainter, "checkpoint", None),
            **self.settings,
        }
        dm = getattr(self.trainer, "datamodule", None)
        describe = getattr(dm, "describe", None)
        if callable(describe):
            settings["data"] = describe()
        mask_protocol = settings.get("data", {}).get("masks") if isinstance(settings.get("data"), dict) else None
        per_image = sorted(rows, key=lambda r: r["key"])
        write_report(
            out_dir,
            name=self.name,
            figures=figures,
            num_images=num_images,
            benchmark=self.benchmark,
            mask_protocol=mask_protocol,
            settings=settings,
            comparable_to_paper=self.comparable_to_paper,
            per_image=per_image,
        )
        log_table(self.loggers, "test/per_image", PER_IMAGE_COLUMNS, per_image, step=self.global_step)
        self._write_grids(out_dir)

    # ----------------------------------------------------------------- helpers
    def setup(self, stage: str) -> None:
        # Resolving the run directory is a collective call under DDP: do it here, on every rank,
        # not in the rank-0-only report writer.
        self._run_dir = run_directory(self.trainer)

    def _report_dir(self) -> Path:
        if self.report_dir is not None:
            return Path(self.report_dir)
        return self._run_dir / "eval"

    def _write_grids(self, out_dir: Path) -> None:
        per_file = self.grid_rows_per_file
        for index in range(math.ceil(len(self._grid_images) / per_file)):
            rows = self._grid_images[index * per_file:(index + 1) * per_file]
            save_grid(out_dir / f"samples_{index:02d}.png", rows, ["masked input", "inpainted", "original"],
                      loggers=self.loggers, key=f"test/samples_{index:02d}", step=self.global_step)

    def configure_optimizers(self) -> None:
        """Evaluation only: nothing is trained."""
        return None
