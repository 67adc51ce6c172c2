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

Beside FID / LPIPS / PSNR / SSIM it reports the measures that tell a working inpainter from a blur
(docs/evaluation.md): SWD of patches in the holes (``evaluation/swd.py``), hole MAE / PSNR of one sample and of
the mean of ``num_samples`` samples (``evaluation/sample_metrics.py``), seam error, and for object removal
(batches with ``mask_type`` and a clean plate, e.g. the synthetic shards) the residue fraction and clean-plate
MAE (``evaluation/removal_metrics.py``), with targets by ``evaluation.targets.evaluation_targets``; all of them
per hole-area bin and per mask type (``evaluation/binned_table.py``).

Scoring another tool's outputs: give the data module ``predictions_dir`` (``datamodules.eval_data``); its
batches then carry ``prediction`` and the evaluator scores those files instead of running an inpainter.

Outputs (rank 0), in ``report_dir`` (default ``<run directory>/eval``): ``report.json``,
``report.csv``, ``per_image.csv``, ``bins.csv`` (the per-group table; :mod:`evaluation.report`) and
``samples_XX.png`` labelled grids (masked input | inpainted | original, one row per image). Logged:
``test/fid``, ``test/lpips``, ``test/psnr``, ``test/ssim``, ``test/swd``, ``test/mae_mean_k``, ``test/mae_sample``,
``test/seam_error``, ``test/residue`` (when there are removal cases), ``test/num_images``; the grids
(``test/samples_XX``), the per-image table (``test/per_image``) and the per-group table (``test/bins``) also go to
every W&B (table) / TensorBoard (text) logger (:mod:`evaluation.log_media`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import torch
from lightning.pytorch import LightningModule

from callbacks.run_directory import run_directory
from evaluation.binned_table import FID_MIN_IMAGES, TABLE_COLUMNS, binned_table
from evaluation.case_scores import ROW_METRICS, score_cases
from evaluation.feature_extractors import FeatureExtractor, InceptionFeatures
from evaluation.grids import masked_view
from evaluation.inpainter_checkpoint import inpainter_state_from_checkpoint
from evaluation.log_media import log_table, save_grid
from evaluation.metrics import InpaintingMetrics
from evaluation.report import PAPER_BENCHMARKS, PER_IMAGE_COLUMNS, write_report
from evaluation.rows import check_unique, gather_rows, markdown_table
from evaluation.targets import OBJECT_DILATION, evaluation_targets
from evaluation.weights import build_lpips
from inpainters.base import Inpainter, composite_known
from inpainters.c2f import C2FInpainter
from masks.random import key_seed
from masks.types import Category

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
        num_samples: samples per image (K) for the mean-of-K MAE / PSNR; an inpainter with a ``seed``
            attribute (C2F) is sampled with seeds ``seed, seed + 1, ...``; one without is deterministic (K = 1).
            FID / LPIPS / SSIM / SWD use the first sample.
        swd_patches: 7x7 patches per image and pyramid level for the SWD (Karras: 128); 0 = no SWD.
        swd_region: SWD patch centres ``hole`` (inside the holes) or ``image`` (anywhere).
        swd_max_images: bound on the images whose patches are kept for the SWD (memory: ~75 KB per image and
            pyramid level): with a larger set (the data module's ``items()``), each image is kept when its key's
            hash falls below ``swd_max_images / N`` -- the same subset on any number of ranks; the other metrics
            use every image.
        bin_fid_min_images: fewest images of a hole-area bin / mask type for which the table gives a FID
            (below it, FID's small-sample bias dominates; the cell stays empty).
        object_dilation: object holes (mask type 0) grow by this fraction of the image side (>= 1 px) before
            inpainting, like real removal masks (``evaluation.targets``).
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
        num_samples: int = 1,
        swd_patches: int = 128,
        swd_region: str = "hole",
        swd_max_images: int = 4096,
        bin_fid_min_images: int = FID_MIN_IMAGES,
        object_dilation: float = OBJECT_DILATION,
    ) -> None:
        super().__init__()
        if benchmark is not None and benchmark not in PAPER_BENCHMARKS:
            raise ValueError(
                f"InpaintingEvaluator: benchmark={benchmark!r} is not a column of the paper's table "
                f"{PAPER_BENCHMARKS}; use one of them or null"
            )
        if num_grid_images < 0 or grid_rows_per_file < 1:
            raise ValueError("InpaintingEvaluator: num_grid_images must be >= 0 and grid_rows_per_file >= 1")
        if num_samples < 1 or swd_patches < 0 or bin_fid_min_images < 2:
            raise ValueError("InpaintingEvaluator: num_samples must be >= 1, swd_patches >= 0, bin_fid_min_images >= 2")
        if swd_region not in ("hole", "image"):
            raise ValueError(f"InpaintingEvaluator: swd_region must be 'hole' or 'image', got {swd_region!r}")
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
            "num_samples": num_samples,
            "swd_patches": swd_patches,
            "swd_region": swd_region,
            "swd_max_images": swd_max_images,
            "bin_fid_min_images": bin_fid_min_images,
            "object_dilation": object_dilation,
        }
        self.num_samples, self.swd_patches, self.swd_region = num_samples, swd_patches, swd_region
        self.swd_max_images = swd_max_images
        self._swd_fraction = 1.0
        self.bin_fid_min_images, self.object_dilation = bin_fid_min_images, object_dilation
        self.checkpoint_prefix = checkpoint_prefix
        self.num_grid_images = num_grid_images
        self.grid_rows_per_file = grid_rows_per_file
        self.report_dir = report_dir
        self.seed = seed
        self._rows: list[dict[str, Any]] = []
        self._sets: list[dict[str, Any]] = []
        self._grid_images: list[tuple[str, list[torch.Tensor]]] = []

    @property
    def name(self) -> str:
        """Label of the inpainter in the report."""
        if self._name:
            return self._name
        return type(self.inpainter).__name__ if self.inpainter is not None else "predictions"

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
        self._rows, self._sets, self._grid_images = [], [], []
        self._swd_fraction = self._swd_keep_fraction()
        if self._scores_predictions():
            return
        self._require_inpainter().eval()

    def _swd_keep_fraction(self) -> float:
        """Share of images whose SWD patches are kept: ``swd_max_images / N`` for a data module of known size."""
        dm = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        items = getattr(dm, "items", None)
        total = len(items()) if callable(items) else 0
        return 1.0 if total <= self.swd_max_images else self.swd_max_images / total

    def _keeps_swd_patches(self, key: str) -> bool:
        return self._swd_fraction >= 1.0 or key_seed(key, self.seed + 1) / 2**63 < self._swd_fraction

    def _scores_predictions(self) -> bool:
        """True when the data module reads another tool's outputs (``predictions_dir``): nothing is inpainted."""
        dm = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        return getattr(dm, "predictions_dir", None) is not None

    def _batch_seed(self, keys: list[str]) -> int:
        return key_seed("|".join(keys), self.seed)

    def _requested_category(self, batch_size: int) -> torch.Tensor:
        """The LCG category the inpainter fills with (its ``category``; weight-free fills count as background)."""
        name = getattr(self.inpainter, "category", "background")
        value = Category.FOREGROUND if name == "foreground" else Category.BACKGROUND
        return torch.full((batch_size,), int(value), dtype=torch.long)

    def _samples(self, image: torch.Tensor, hole: torch.Tensor, keys: list[str]) -> torch.Tensor:
        """``(K, B, 3, H, W)`` fills; K = ``num_samples`` for an inpainter with a ``seed`` attribute, else 1."""
        inpainter = self.inpainter
        stochastic = isinstance(getattr(inpainter, "seed", None), int)
        base = getattr(inpainter, "seed", 0)
        outs = []
        try:
            for k in range(self.num_samples if stochastic else 1):
                if stochastic:
                    inpainter.seed = base + k
                torch.manual_seed(self._batch_seed(keys) + k)
                out = inpainter(image, hole)
                if out.shape != image.shape:
                    raise RuntimeError(
                        f"{self.name} returned shape {tuple(out.shape)} for input {tuple(image.shape)}; "
                        "an inpainter must return an image of the input's shape"
                    )
                outs.append(out.float().clamp(-1, 1))
        finally:
            if stochastic:
                inpainter.seed = base
        return torch.stack(outs)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        image, keys = batch["image"].float(), list(batch["key"])
        hole = (batch["mask"] > 0.5).to(image.dtype)
        target, removal, mask_type, clean = image, None, batch.get("mask_type"), None
        if mask_type is not None and "prediction" not in batch:
            clean = batch.get("clean_plate")
            targets = evaluation_targets(image, hole, mask_type, self._requested_category(image.shape[0]).to(image.device),
                                         clean, batch.get("has_clean_plate"), self.object_dilation)
            hole, target, removal = targets.mask, targets.target, targets.removal
        if "prediction" in batch:
            samples = batch["prediction"].float().clamp(-1, 1)[None]
        else:
            samples = self._samples(image, hole, keys)
        samples = torch.stack([composite_known(s, image, hole) for s in samples])  # known pixels exact, whatever the inpainter did
        out = samples[0]
        per_image = self.metrics.update(out, image)
        rows, descriptors = score_cases(samples, hole, target, keys, removal, clean, mask_type, self.swd_patches,
                                        self.swd_region, self.seed)
        real_feat, fake_feat = (f.float().cpu() for f in self.metrics.last_features)  # for the per-group FID
        for i, (key, row) in enumerate(zip(keys, rows)):
            row.update({name: float(values[i]) for name, values in per_image.items()})
            self._rows.append(row)
            desc = descriptors.get(key) if self._keeps_swd_patches(key) else None
            self._sets.append({"key": key, "desc": desc, "feat": (real_feat[i], fake_feat[i])})
        if self.global_rank == 0 and len(self._grid_images) < self.num_grid_images:
            take = min(self.num_grid_images - len(self._grid_images), image.shape[0])
            for i in range(take):
                images = [masked_view(image[i], hole[i]), out[i], target[i]]
                self._grid_images.append((keys[i], [t.float().cpu() for t in images]))

    def on_test_epoch_end(self) -> None:
        figures = self.metrics.compute()
        rows = gather_rows(self._rows)
        sets = gather_rows(self._sets)
        num_images = len(rows)
        check_unique(rows, ("key",), "InpaintingEvaluator")  # every rank holds all rows: all raise together
        table = binned_table(
            rows, (*ROW_METRICS, "lpips", "ssim"),
            descriptors={s["key"]: s["desc"] for s in sets if s["desc"] is not None} if self.swd_patches else None,
            features={s["key"]: s["feat"] for s in sets}, fid_min_images=self.bin_fid_min_images,
        )
        overall = table[0]
        extra = {k: overall.get(k) for k in ("swd", "mae_mean_k", "mae_sample", "psnr_mean_k", "seam_error", "residue",
                                             "clean_mae", "texture_ratio_set")}
        for key, value in figures.items():
            self.log(f"test/{key}", value, sync_dist=True)  # already global: identical on every rank
        for key, value in extra.items():
            if value is not None and math.isfinite(value):
                self.log(f"test/{key}", float(value), sync_dist=True)
        self.log("test/num_images", float(num_images), sync_dist=True)
        if self.global_rank != 0:
            return
        out_dir = self._report_dir()
        settings = {
            "inpainter": type(self.inpainter).__name__ if self.inpainter is not None else None,
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
            extra_figures=extra,
            bins=table,
        )
        log_table(self.loggers, "test/per_image", PER_IMAGE_COLUMNS, per_image, step=self.global_step)
        log_table(self.loggers, "test/bins", TABLE_COLUMNS, table, step=self.global_step)
        shown = ("group", "value", "count", "fid", "lpips", "ssim", "swd", "mae_mean_k", "mae_sample", "residue")
        print(f"\n{self.name}: per-group table ({out_dir / 'bins.csv'} has every column)\n"
              + markdown_table(table, [c for c in shown if any(r.get(c) is not None for r in table)]), flush=True)
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
            save_grid(out_dir / f"samples_{index:02d}.png", rows, ["masked input", "inpainted", "target"],
                      loggers=self.loggers, key=f"test/samples_{index:02d}", step=self.global_step)

    def configure_optimizers(self) -> None:
        """Evaluation only: nothing is trained."""
        return None
