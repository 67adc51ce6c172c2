"""Ripple-removal evaluator: HFGI pose edits with and without ghost removal, side by side.

For each test image and each degree: HFGI inversion -> edit along a direction (pose by default)
-> parse original and edit -> ripple mask -> inpaint the ripple region -> composite the edited
person back (:class:`ripple.remover.RippleRemover`). Per image and degree it measures

- ``ghost_hfgi`` / ``ghost_cleaned``: edge correlation with the original inside the ghost region
  (ripple region minus the edited person); **higher = more ghosting**;
- ``ghost_lpips_hfgi`` / ``ghost_lpips_cleaned``: LPIPS distance to the original there;
  **lower = more ghosting**;
- ``preserve_psnr`` / ``preserve_lpips``: cleaned vs HFGI edit outside the ripple region;
- ``region_fraction``: share of the image that was inpainted;

writes them to ``<out_dir>/ripple_metrics.csv`` (one row per image and degree, then summary rows
per degree and overall) and ``ripple_report.json``, logs the means as ``test/<name>`` and
``test/d<degree>/<name>``, computes FID of plain and cleaned edits against the real images
(when at least ``fid_min_images`` images were seen) and saves grids
(original | HFGI edit | ripple mask | cleaned) as PNG files and to the logger.
``predict`` writes the cleaned images (and the plain edits) as PNG files and
``predictions/status.csv`` (status and region fraction per image and degree).
"""
from __future__ import annotations

import csv
import json
import math
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_warn
from PIL import Image
from torchmetrics.image.fid import FrechetInceptionDistance
from torchvision.utils import make_grid

from callbacks.run_directory import run_directory
from evaluation.feature_extractors import InceptionFeatures
from evaluation.metrics import to_uint8
from evaluation.weights import build_lpips
from inpainters.base import Inpainter
from networks.hfgi.editing import load_direction
from networks.hfgi.pipeline import HFGIPipeline
from ripple.ghost_metrics import edge_correlation, masked_perceptual_distance, masked_psnr
from ripple.parsers import HumanParser, save_person_mask
from ripple.remover import STATUS_CLEANED, STATUS_EMPTY_REGION, STATUS_NO_PERSON_EDIT, STATUS_NO_PERSON_ORIGINAL, RippleRemover

METRICS = ("region_fraction", "ghost_hfgi", "ghost_cleaned", "ghost_lpips_hfgi", "ghost_lpips_cleaned",
           "preserve_psnr", "preserve_lpips")
CSV_FIELDS = ("key", "degree", "status", *METRICS, "n_images", "n_cleaned", "n_empty_region", "n_no_person",
              "fid_hfgi", "fid_cleaned")


def edit_key(key: str, direction_name: str, degree: float) -> str:
    """Parser key of an edit: ``<key>.<direction><degree>`` (e.g. ``000123.pose3``, ``000123.pose-1.5``)."""
    return f"{key}.{direction_name}{degree:g}"


class RippleRemovalEvaluator(LightningModule):
    """HFGI editing with ripple removal, evaluated (``test``) or applied to files (``predict``).

    Args:
        parser: human parser (``ripple.parsers.GraphonomyParser`` or ``MaskFolderParser``).
        inpainter: background inpainter (``inpainters.lama.LamaInpainter``, ``inpainters.c2f.C2FInpainter``).
        hfgi: keyword arguments of ``HFGIPipeline.build`` (size, style_dim, n_mlp, channel_multiplier,
            max_channels, fusion_layer, resolution, encoder_layers); ``None`` = the official FFHQ 1024 model.
        hfgi_checkpoint: official HFGI ``ckpt.pt`` (all HFGI weights).
        e4e_checkpoint: official e4e file (used when no HFGI checkpoint is given).
        stylegan2_checkpoint: official StyleGAN2 file (``g_ema``).
        direction: InterfaceGAN direction file (e.g. ``editings/interfacegan_directions/pose.pt``);
            ``None`` draws a fixed random direction (smoke tests with random networks only).
        direction_name: name of the direction in keys, file names and the report.
        degrees: edit strengths; one edit (and one cleaned image) per degree.
        open_kernel: odd opening kernel of the ripple mask (0 = off).
        dilate_kernel: odd dilation kernel of the ripple mask, sized to cover the ghost's halo.
        seam_grow: pixels the edited person's mask grows before feathering.
        seam_sigma: Gaussian feather of the composite seam (pixels; 0 = hard).
        lpips_net: LPIPS backbone (``alex``, ``vgg``, ``squeeze``).
        lpips_pretrained_backbone: load the ImageNet backbone (False: random, CI only).
        weights_dir: folder of the metric weight files (default ``$TORCH_HOME/hub/checkpoints``).
        fid_features: FID feature extractor (``evaluation.feature_extractors``); ``None`` = Inception pool3.
        fid_min_images: compute FID only when at least this many test images were seen.
        num_grid_images: images shown in the grids (first ones of the test/predict set).
        save_masks: also write every ripple-mask stage as PNG (``<out_dir>/masks``).
        out_dir: where the CSV, report, grids and predictions go; ``None`` = ``<log_dir>/ripple``.
        random_direction_seed: seed of the random direction when ``direction`` is ``None``.
    """

    def __init__(
        self,
        parser: HumanParser,
        inpainter: Inpainter,
        hfgi: dict[str, Any] | None = None,
        hfgi_checkpoint: str | None = None,
        e4e_checkpoint: str | None = None,
        stylegan2_checkpoint: str | None = None,
        direction: str | None = None,
        direction_name: str = "pose",
        degrees: list[float] = [1.0, 2.0, 3.0],
        open_kernel: int = 3,
        dilate_kernel: int = 7,
        seam_grow: int = 1,
        seam_sigma: float = 1.5,
        lpips_net: str = "alex",
        lpips_pretrained_backbone: bool = True,
        weights_dir: str | None = None,
        fid_features: nn.Module | None = None,
        fid_min_images: int = 50,
        num_grid_images: int = 8,
        save_masks: bool = False,
        out_dir: str | None = None,
        random_direction_seed: int = 0,
    ) -> None:
        super().__init__()
        if not degrees:
            raise ValueError("RippleRemovalEvaluator: degrees must list at least one edit strength")
        if fid_min_images < 2 or num_grid_images < 0:
            raise ValueError(f"RippleRemovalEvaluator: fid_min_images must be >= 2 and num_grid_images >= 0, got "
                             f"{fid_min_images}, {num_grid_images}")
        if not direction_name or any(c in direction_name for c in "/\\. "):
            raise ValueError(f"RippleRemovalEvaluator: direction_name {direction_name!r} must be a plain word")
        self.save_hyperparameters(ignore=["parser", "inpainter", "fid_features"])
        self.hfgi = HFGIPipeline.build(**(hfgi or {}))
        if hfgi_checkpoint or e4e_checkpoint or stylegan2_checkpoint:
            self.hfgi.load_official(hfgi=hfgi_checkpoint, e4e=e4e_checkpoint, stylegan2=stylegan2_checkpoint)
        self.hfgi.eval().requires_grad_(False)
        n, d = self.hfgi.n_styles, self.hfgi.style_dim
        if direction is not None:
            dvec = load_direction(direction, n, d)
        else:
            warnings.warn("RippleRemovalEvaluator: no direction file given; using a fixed random direction "
                          "(meaningful only for smoke tests with random networks)", stacklevel=2)
            g = torch.Generator().manual_seed(random_direction_seed)
            dvec = torch.randn(1, n, d, generator=g)
            dvec = dvec / dvec.norm(dim=-1, keepdim=True)
        self.register_buffer("direction", dvec, persistent=False)
        self.direction_name = direction_name
        self.degrees = [float(x) for x in degrees]
        self.remover = RippleRemover(parser, inpainter, open_kernel, dilate_kernel, seam_grow, seam_sigma)
        self.lpips = build_lpips(lpips_net, lpips_pretrained_backbone, weights_dir)
        features = fid_features if fid_features is not None else InceptionFeatures(2048, weights_dir)
        self.fid_hfgi = FrechetInceptionDistance(feature=features, reset_real_features=True)
        self.fid_cleaned = FrechetInceptionDistance(feature=features, reset_real_features=True)
        self.fid_min_images = fid_min_images
        self.num_grid_images = num_grid_images
        self.save_masks = save_masks
        self._out_dir = out_dir
        self._run_dir: Path | None = None
        self._rows: list[dict[str, Any]] = []
        self._grid_count = 0

    # ------------------------------------------------------------------ plumbing
    @property
    def out_dir(self) -> Path:
        """Folder of the CSV, report, grids and predictions."""
        if self._out_dir is not None:
            return Path(self._out_dir)
        return (self._run_dir or Path("runs")) / "ripple"

    def setup(self, stage: str) -> None:
        # Resolving the run directory is a collective call under DDP: do it here, on every rank,
        # not in the rank-0-only writers.
        self._run_dir = run_directory(self.trainer)

    def _edits(self, x: torch.Tensor):
        w = self.hfgi.invert(x)
        for degree in self.degrees:
            edit = self.hfgi.edit_from_latents(x, w, self.direction, degree).clamp(-1, 1)
            if edit.shape != x.shape:
                raise ValueError(
                    f"RippleRemovalEvaluator: the HFGI edit is {tuple(edit.shape[-2:])} but the original images are "
                    f"{tuple(x.shape[-2:])}; set the data resolution to the HFGI generator size "
                    f"({self.hfgi.generator.size})")
            yield degree, edit

    def _clean(self, batch: dict[str, Any]):
        x, keys = batch["image"], list(batch["key"])
        for degree, edit in self._edits(x):
            res = self.remover(x, edit, keys, [edit_key(k, self.direction_name, degree) for k in keys])
            yield x, keys, degree, edit, res

    # ------------------------------------------------------------------ test
    def on_test_epoch_start(self) -> None:
        self._rows, self._grid_count = [], 0
        self.fid_hfgi.reset()
        self.fid_cleaned.reset()

    @torch.no_grad()
    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        real8 = to_uint8(batch["image"])
        self.fid_hfgi.update(real8, real=True)
        self.fid_cleaned.update(real8, real=True)
        for x, keys, degree, edit, res in self._clean(batch):
            ghost = res.ghost_region
            outside = 1 - res.masks.region
            values = {
                "region_fraction": res.masks.region.flatten(1).mean(1),
                "ghost_hfgi": edge_correlation(edit, x, ghost),
                "ghost_cleaned": edge_correlation(res.cleaned, x, ghost),
                "ghost_lpips_hfgi": masked_perceptual_distance(self.lpips, edit, x, ghost),
                "ghost_lpips_cleaned": masked_perceptual_distance(self.lpips, res.cleaned, x, ghost),
                "preserve_psnr": masked_psnr(res.cleaned, edit, outside),
                "preserve_lpips": masked_perceptual_distance(self.lpips, res.cleaned, edit, outside),
            }
            for i, key in enumerate(keys):
                row = {"key": key, "degree": degree, "status": res.status[i]}
                for name, v in values.items():
                    # ghost/preservation scores are only defined where something was cleaned
                    row[name] = float(v[i]) if res.status[i] == STATUS_CLEANED or name == "region_fraction" else math.nan
                self._rows.append(row)
            self.fid_hfgi.update(to_uint8(edit), real=False)
            self.fid_cleaned.update(to_uint8(res.cleaned), real=False)
            self._save_grid("test", batch_idx, degree, x, edit, res)
            if self.save_masks:
                self._write_masks(keys, degree, res)
        self._grid_count += min(x.shape[0], max(0, self.num_grid_images - self._grid_count))

    def on_test_epoch_end(self) -> None:
        rows = self._gather(self._rows)
        n_images = len({r["key"] for r in rows})
        fid = {"fid_hfgi": math.nan, "fid_cleaned": math.nan}
        if n_images >= max(2, self.fid_min_images):
            fid = {"fid_hfgi": float(self.fid_hfgi.compute()), "fid_cleaned": float(self.fid_cleaned.compute())}
        summaries = [self._summary(rows, d) for d in self.degrees] + [self._summary(rows, None, fid)]
        logs = {}
        for s in summaries:
            prefix = "test/" if s["degree"] == "all" else f"test/d{s['degree']:g}/"
            for name in (*METRICS, "n_cleaned", "n_empty_region", "n_no_person", "fid_hfgi", "fid_cleaned"):
                v = s.get(name)
                if isinstance(v, (int, float)) and math.isfinite(v):
                    logs[prefix + name] = float(v)
        self.log_dict(logs, sync_dist=True)
        no_person = sorted({r["key"] for r in rows if r["status"] in (STATUS_NO_PERSON_ORIGINAL, STATUS_NO_PERSON_EDIT)})
        if no_person:
            rank_zero_warn(f"RippleRemovalEvaluator: the parser found no person in {len(no_person)} image(s) (original "
                           f"or edit), kept unchanged: {no_person[:10]}{' ...' if len(no_person) > 10 else ''}")
        if self.trainer.is_global_zero:
            self._write_csv(rows, summaries)
            report = {"direction": self.direction_name, "degrees": self.degrees, "n_images": n_images,
                      "fid_min_images": self.fid_min_images, "summary": summaries,
                      "notes": {"ghost_hfgi/ghost_cleaned": "edge correlation with the original in the ghost region; "
                                "higher = more ghosting", "ghost_lpips_*": "LPIPS to the original there; lower = "
                                "more ghosting", "fid": "NaN when fewer than fid_min_images images"}}
            (self.out_dir / "ripple_report.json").write_text(json.dumps(_jsonable(report), indent=2))
        self.metrics_summary = summaries

    def _summary(self, rows: list[dict[str, Any]], degree: float | None, fid: dict[str, float] | None = None) -> dict[str, Any]:
        sel = [r for r in rows if degree is None or r["degree"] == degree]
        counts = Counter(r["status"] for r in sel)
        out: dict[str, Any] = {"key": "summary", "degree": "all" if degree is None else degree, "status": ""}
        for name in METRICS:
            vals = [r[name] for r in sel if isinstance(r[name], float) and math.isfinite(r[name])]
            out[name] = float(np.mean(vals)) if vals else math.nan
        out.update(n_images=len(sel), n_cleaned=counts[STATUS_CLEANED], n_empty_region=counts[STATUS_EMPTY_REGION],
                   n_no_person=counts[STATUS_NO_PERSON_ORIGINAL] + counts[STATUS_NO_PERSON_EDIT])
        out.update(fid or {"fid_hfgi": math.nan, "fid_cleaned": math.nan})
        return out

    def _write_csv(self, rows: list[dict[str, Any]], summaries: list[dict[str, Any]]) -> Path:
        path = self.out_dir / "ripple_metrics.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, restval="")
            writer.writeheader()
            for r in sorted(rows, key=lambda r: (r["key"], r["degree"])) + summaries:
                writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
        return path

    def _gather(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            parts: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(parts, rows)
            return [r for p in parts for r in p]
        return list(rows)

    # ------------------------------------------------------------------ predict
    def on_predict_epoch_start(self) -> None:
        self._grid_count = 0
        self._rows = []

    def on_predict_epoch_end(self) -> None:
        rows = self._gather(self._rows)
        if self.trainer.is_global_zero and rows:
            path = self.out_dir / "predictions" / "status.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=("key", "degree", "status", "region_fraction"))
                writer.writeheader()
                for r in sorted(rows, key=lambda r: (r["key"], r["degree"])):
                    writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})

    @torch.no_grad()
    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        out = []
        pred_dir = self.out_dir / "predictions"
        for x, keys, degree, edit, res in self._clean(batch):
            for i, key in enumerate(keys):
                name = edit_key(key, self.direction_name, degree)
                _save_png(res.cleaned[i], pred_dir / f"{name}.png")
                _save_png(edit[i], pred_dir / f"{name}_hfgi.png")
                out.append({"key": key, "degree": degree, "status": res.status[i],
                            "region_fraction": float(res.masks.region[i].mean())})
            self._save_grid("predict", batch_idx, degree, x, edit, res)
            if self.save_masks:
                self._write_masks(keys, degree, res)
        self._rows.extend(out)
        self._grid_count += min(batch["image"].shape[0], max(0, self.num_grid_images - self._grid_count))
        return out

    # ------------------------------------------------------------------ images
    def _write_masks(self, keys: Sequence[str], degree: float, res) -> None:
        for i, key in enumerate(keys):
            stem = self.out_dir / "masks" / edit_key(key, self.direction_name, degree)
            for stage in ("person_original", "person_edit", "raw", "opened", "region"):
                save_person_mask(getattr(res.masks, stage)[i], f"{stem}_{stage}.png")

    def _save_grid(self, split: str, batch_idx: int, degree: float, x, edit, res) -> None:
        n = min(x.shape[0], self.num_grid_images - self._grid_count)
        if n <= 0 or (self._trainer is not None and not self.trainer.is_global_zero):
            return
        mask_rgb = res.masks.region[:n].expand(-1, 3, -1, -1) * 2 - 1
        tiles = torch.stack([x[:n], edit[:n], mask_rgb, res.cleaned[:n]], dim=1).flatten(0, 1)
        grid = make_grid(tiles.float().cpu().clamp(-1, 1), nrow=4, value_range=(-1, 1), normalize=True, padding=2)
        name = f"{split}_b{batch_idx:04d}_{self.direction_name}{degree:g}"
        path = self.out_dir / "grids" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)
        caption = "original | HFGI edit | ripple mask | cleaned"
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=f"{split}/ripple_{self.direction_name}{degree:g}", images=[grid], caption=[caption])
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(f"{split}/{name}", grid, self.global_step)


def _save_png(image: torch.Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = to_uint8(image[None])[0].permute(1, 2, 0).cpu().numpy()
    Image.fromarray(arr).save(path)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj
