"""Ripple removal as LightningModules: ghost metrics and reports (``test``), cleaned files (``predict``).

One pipeline, two sources of edits:

- :class:`RippleRemovalEvaluator`: HFGI inversion -> edit along a direction (pose by default), one
  edit per degree (``configs/ripple/tiny.yaml``, ``configs/ripple/ffhq_full.yaml``);
- :class:`EditPairsRippleRemoval`: (original, edit) pairs from disk made by any editor
  (:class:`datamodules.edit_pairs.EditPairsDataModule`, ``configs/ripple/pairs.yaml``); no HFGI
  network is built.

Both then run the same steps (:class:`RippleRemovalBase`): parse original and edit -> ripple mask
-> inpaint the ripple region -> composite the edited person back (:class:`ripple.remover.RippleRemover`),
and per image (and degree) measure

- ``ghost_<plain>`` / ``ghost_cleaned``: edge correlation with the original inside the ghost region
  (ripple region minus the edited person); **higher = more ghosting**; ``<plain>`` is ``hfgi`` for
  HFGI edits and ``edit`` for pairs;
- ``ghost_lpips_<plain>`` / ``ghost_lpips_cleaned``: LPIPS distance to the original there;
  **lower = more ghosting**;
- ``preserve_psnr`` / ``preserve_lpips``: cleaned vs plain edit outside the ripple region;
- ``region_fraction``: share of the image that was inpainted;

write them to ``<out_dir>/ripple_metrics.csv`` (one row per image [and degree], then summary rows)
and ``ripple_report.json``, log the means as ``test/<name>`` (HFGI: also ``test/d<degree>/<name>``),
compute FID of plain and cleaned edits against the originals (when at least ``fid_min_images``
images were seen), and save grids (original | edit | ripple mask | cleaned). Grids and tables also
go to every W&B / TensorBoard logger (:mod:`evaluation.log_media`). ``predict`` writes the cleaned
images as PNG files and ``predictions/status.csv``.
"""
from __future__ import annotations

import abc
import math
import warnings
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_warn
from torchmetrics.image.fid import FrechetInceptionDistance

from callbacks.run_directory import run_directory
from evaluation.feature_extractors import FeatureExtractor, InceptionFeatures
from evaluation.grids import to_pil
from evaluation.log_media import log_table, save_grid
from safe_io import output_path
from evaluation.metrics import to_uint8
from evaluation.rows import check_unique, gather_rows, write_csv, write_json
from evaluation.weights import build_lpips
from inpainters.base import Inpainter
from networks.hfgi.editing import load_direction
from networks.hfgi.pipeline import HFGIConfig
from ripple.ghost_metrics import edge_correlation, masked_perceptual_distance, masked_psnr
from ripple.parsers import HumanParser, MaskFolderParser, save_person_mask
from ripple.remover import (
    STATUS_CLEANED,
    STATUS_EMPTY_REGION,
    STATUS_NO_PERSON_EDIT,
    STATUS_NO_PERSON_ORIGINAL,
    RippleResult,
    RippleRemover,
)

__all__ = ["RippleRemovalBase", "RippleRemovalEvaluator", "EditPairsRippleRemoval", "EditBatch", "edit_key"]

COUNTS = ("n_images", "n_cleaned", "n_empty_region", "n_no_person")
MASK_STAGES = ("person_original", "person_edit", "raw", "opened", "region")


def edit_key(key: str, direction_name: str, degree: float) -> str:
    """Parser key of an edit: ``<key>.<direction><degree>`` (e.g. ``000123.pose3``, ``000123.pose-1.5``)."""
    return f"{key}.{direction_name}{degree:g}"


@dataclass
class EditBatch:
    """One set of edits of a batch of originals.

    Attributes:
        edit: ``(B,3,H,W)`` edited images in [-1, 1], the size of the originals.
        names: per image, the name of its outputs (prediction / mask files).
        parser_keys: per image, the key a file-based parser reads the edit's mask under.
        fields: extra row columns shared by the batch (``{"degree": 3.0}`` for HFGI; empty for pairs).
        label: suffix of grid names and logger keys (``pose3``; empty for pairs).
    """

    edit: torch.Tensor
    names: list[str]
    parser_keys: list[str]
    fields: dict[str, Any]
    label: str


class RippleRemovalBase(LightningModule, abc.ABC):
    """The shared ripple-removal steps; subclasses say where the edits come from (:meth:`edits`).

    Abstract (not a job of its own): use :class:`RippleRemovalEvaluator` (HFGI edits) or
    :class:`EditPairsRippleRemoval` (pairs of originals and edits from files).

    Args:
        parser: human parser (``ripple.parsers.GraphonomyParser`` or ``MaskFolderParser``).
        inpainter: background inpainter (``inpainters.lama.LamaInpainter``, ``inpainters.c2f.C2FInpainter``,
            ``inpainters.classical.TeleaInpainter``, ...).
        open_kernel: odd opening kernel of the ripple mask (0 = off).
        dilate_kernel: odd dilation kernel of the ripple mask, sized to cover the ghost's halo.
        seam_grow: pixels the edited person's mask grows before feathering.
        seam_sigma: Gaussian feather of the composite seam (pixels; 0 = hard).
        lpips_net: LPIPS backbone (``alex``, ``vgg``, ``squeeze``).
        lpips_pretrained_backbone: load the ImageNet backbone (False: random, CI only).
        weights_dir: folder of the metric weight files (default ``$TORCH_HOME/hub/checkpoints``).
        fid_features: FID feature extractor (``evaluation.feature_extractors``); ``None`` = Inception pool3.
            The metric networks are built for ``test`` only: ``predict`` needs no metric weights.
        fid_min_images: compute FID only when at least this many test images were seen.
        num_grid_images: images shown in the grids (first ones of the test/predict set).
        save_masks: also write every ripple-mask stage as PNG (``<out_dir>/masks``).
        out_dir: where the CSV, report, grids and predictions go; ``None`` = ``<run dir>/ripple``.
    """

    #: name of the un-cleaned edit in metric names (``ghost_<PLAIN>``, ``fid_<PLAIN>``).
    PLAIN = "edit"
    #: grid column title of the un-cleaned edit.
    PLAIN_TITLE = "edit"
    #: row columns that, with ``key``, identify a row (``("degree",)`` for HFGI).
    VARIANT_FIELDS: tuple[str, ...] = ()
    #: also write the un-cleaned edits in ``predict`` (``<name>_<PLAIN>.png``).
    WRITE_PLAIN_PREDICTIONS = False

    def __init__(
        self,
        parser: HumanParser | None,
        inpainter: Inpainter,
        open_kernel: int = 3,
        dilate_kernel: int = 7,
        seam_grow: int = 1,
        seam_sigma: float = 1.5,
        lpips_net: str = "alex",
        lpips_pretrained_backbone: bool = True,
        weights_dir: str | None = None,
        fid_features: FeatureExtractor | None = None,
        fid_min_images: int = 50,
        num_grid_images: int = 8,
        save_masks: bool = False,
        out_dir: str | None = None,
    ) -> None:
        super().__init__()
        who = type(self).__name__
        if fid_min_images < 2 or num_grid_images < 0:
            raise ValueError(f"{who}: fid_min_images must be >= 2 and num_grid_images >= 0, got "
                             f"{fid_min_images}, {num_grid_images}")
        if fid_features is not None and not isinstance(getattr(fid_features, "num_features", None), int):
            raise ValueError(f"{who}: fid_features ({type(fid_features).__name__}) needs an int `num_features`")
        self.save_hyperparameters(ignore=["parser", "inpainter", "fid_features"])
        for name, value in list(self.hparams.items()):
            if is_dataclass(value) and not isinstance(value, type):
                self.hparams[name] = asdict(value)
        self.remover = RippleRemover(parser, inpainter, open_kernel, dilate_kernel, seam_grow, seam_sigma)
        self._metric_args = (lpips_net, lpips_pretrained_backbone, weights_dir)
        self._fid_features = fid_features
        self.lpips: torch.nn.Module | None = None
        self.fid_plain: FrechetInceptionDistance | None = None
        self.fid_cleaned: FrechetInceptionDistance | None = None
        self.fid_min_images = fid_min_images
        self.num_grid_images = num_grid_images
        self.save_masks = save_masks
        self._out_dir = out_dir
        self._run_dir: Path | None = None
        self._rows: list[dict[str, Any]] = []
        self._grid_count = 0
        self.metrics_summary: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ what subclasses define
    @abc.abstractmethod
    def edits(self, batch: dict[str, Any]) -> Iterator[EditBatch]:
        """The edits of a batch of originals (``batch["image"]``), one :class:`EditBatch` per variant."""

    def variant_groups(self) -> list[dict[str, Any]]:
        """Row filters that get their own summary row (e.g. one per degree); ``[]`` = only the overall one."""
        return []

    def variant_tag(self, group: dict[str, Any]) -> str:
        """Logger prefix part of a summary group (e.g. ``d3``)."""
        return ""

    def report_header(self) -> dict[str, Any]:
        """What the edits were (goes first into ``ripple_report.json``)."""
        return {}

    # ------------------------------------------------------------------ names
    @property
    def metric_names(self) -> tuple[str, ...]:
        """Per-image metrics, in CSV order."""
        p = self.PLAIN
        return ("region_fraction", f"ghost_{p}", "ghost_cleaned", f"ghost_lpips_{p}", "ghost_lpips_cleaned",
                "preserve_psnr", "preserve_lpips")

    @property
    def fid_names(self) -> tuple[str, str]:
        """Names of the two FIDs (plain edits, cleaned edits)."""
        return f"fid_{self.PLAIN}", "fid_cleaned"

    @property
    def csv_columns(self) -> tuple[str, ...]:
        """Columns of ``ripple_metrics.csv``."""
        return ("key", *self.VARIANT_FIELDS, "status", *self.metric_names, *COUNTS, *self.fid_names)

    @property
    def out_dir(self) -> Path:
        """Folder of the CSV, report, grids and predictions."""
        if self._out_dir is not None:
            return Path(self._out_dir)
        return (self._run_dir or Path("runs")) / "ripple"

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str) -> None:
        # Resolving the run directory is a collective call under DDP: do it here, on every rank,
        # not in the rank-0-only writers.
        self._run_dir = run_directory(self.trainer)
        if stage == "test" and self.lpips is None:
            self._build_metrics()

    def _build_metrics(self) -> None:
        lpips_net, pretrained, weights_dir = self._metric_args
        self.lpips = build_lpips(lpips_net, pretrained, weights_dir)
        features = self._fid_features if self._fid_features is not None else InceptionFeatures(2048, weights_dir)
        self.fid_plain = FrechetInceptionDistance(feature=features, reset_real_features=True)
        self.fid_cleaned = FrechetInceptionDistance(feature=features, reset_real_features=True)

    def _clean(self, batch: dict[str, Any]) -> Iterator[tuple[torch.Tensor, list[str], EditBatch, RippleResult]]:
        x, keys = batch["image"], list(batch["key"])
        for eb in self.edits(batch):
            if eb.edit.shape != x.shape:
                raise ValueError(f"{type(self).__name__}: the edits are {tuple(eb.edit.shape)} but the originals "
                                 f"{tuple(x.shape)}; both must have the same size")
            yield x, keys, eb, self.remover(x, eb.edit, keys, eb.parser_keys)

    # ------------------------------------------------------------------ test
    def on_test_epoch_start(self) -> None:
        self._rows, self._grid_count = [], 0
        self.fid_plain.reset()
        self.fid_cleaned.reset()

    @torch.no_grad()
    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        real8 = to_uint8(batch["image"])
        self.fid_plain.update(real8, real=True)
        self.fid_cleaned.update(real8, real=True)
        names = self.metric_names
        for x, keys, eb, res in self._clean(batch):
            edit, ghost, outside = eb.edit, res.ghost_region, 1 - res.masks.region
            values = dict(zip(names, (
                res.masks.region.flatten(1).mean(1),
                edge_correlation(edit, x, ghost),
                edge_correlation(res.cleaned, x, ghost),
                masked_perceptual_distance(self.lpips, edit, x, ghost),
                masked_perceptual_distance(self.lpips, res.cleaned, x, ghost),
                masked_psnr(res.cleaned, edit, outside),
                masked_perceptual_distance(self.lpips, res.cleaned, edit, outside),
            )))
            for i, key in enumerate(keys):
                row = {"key": key, **eb.fields, "status": res.status[i]}
                for name, v in values.items():
                    # ghost/preservation scores are only defined where something was cleaned
                    defined = res.status[i] == STATUS_CLEANED or name == "region_fraction"
                    row[name] = float(v[i]) if defined else math.nan
                self._rows.append(row)
            self.fid_plain.update(to_uint8(edit), real=False)
            self.fid_cleaned.update(to_uint8(res.cleaned), real=False)
            self._save_grid("test", batch_idx, x, keys, eb, res)
            if self.save_masks:
                self._write_masks(eb.names, res)
        self._grid_count += min(batch["image"].shape[0], max(0, self.num_grid_images - self._grid_count))

    def on_test_epoch_end(self) -> None:
        rows = gather_rows(self._rows)
        check_unique(rows, ("key", *self.VARIANT_FIELDS), type(self).__name__)
        n_images = len({r["key"] for r in rows})
        fid_plain, fid_cleaned = self.fid_names
        fid = {fid_plain: math.nan, fid_cleaned: math.nan}
        if n_images >= self.fid_min_images:
            fid = {fid_plain: float(self.fid_plain.compute()), fid_cleaned: float(self.fid_cleaned.compute())}
        summaries = [self._summary(rows, g) for g in self.variant_groups()] + [self._summary(rows, None, fid)]
        logs = {}
        for group, s in zip([*self.variant_groups(), None], summaries):
            tag = self.variant_tag(group) if group is not None else ""
            prefix = f"test/{tag}/" if tag else "test/"
            for name in (*self.metric_names, *COUNTS[1:], *self.fid_names):
                v = s.get(name)
                if isinstance(v, (int, float)) and math.isfinite(v):
                    logs[prefix + name] = float(v)
        self.log_dict(logs, sync_dist=True)
        no_person = sorted({r["key"] for r in rows if r["status"] in (STATUS_NO_PERSON_ORIGINAL, STATUS_NO_PERSON_EDIT)})
        if no_person:
            rank_zero_warn(f"{type(self).__name__}: the parser found no person in {len(no_person)} image(s) (original "
                           f"or edit), kept unchanged: {no_person[:10]}{' ...' if len(no_person) > 10 else ''}")
        self.metrics_summary = summaries
        if not self.trainer.is_global_zero:
            return
        ordered = sorted(rows, key=self._row_order)
        write_csv(self.out_dir / "ripple_metrics.csv", ordered + summaries, self.csv_columns)
        p = self.PLAIN
        report = {**self.report_header(), "n_images": n_images, "fid_min_images": self.fid_min_images,
                  "summary": summaries,
                  "notes": {f"ghost_{p}/ghost_cleaned": "edge correlation with the original in the ghost region; "
                            "higher = more ghosting", "ghost_lpips_*": "LPIPS to the original there; lower = "
                            "more ghosting", "fid": "NaN (null) when fewer than fid_min_images images"}}
        write_json(self.out_dir / "ripple_report.json", report)
        row_columns = [c for c in self.csv_columns if c not in (*COUNTS, *self.fid_names)]
        summary_columns = [c for c in self.csv_columns if c not in ("key", "status")]
        log_table(self.loggers, "test/ripple_per_image", row_columns, ordered, step=self.global_step)
        log_table(self.loggers, "test/ripple_summary", summary_columns, summaries, step=self.global_step)

    def _row_order(self, row: dict[str, Any]) -> tuple:
        return (row["key"], *(row[f] for f in self.VARIANT_FIELDS))

    def _summary(self, rows: list[dict[str, Any]], group: dict[str, Any] | None,
                 fid: dict[str, float] | None = None) -> dict[str, Any]:
        sel = [r for r in rows if group is None or all(r[k] == v for k, v in group.items())]
        counts = {s: sum(r["status"] == s for r in sel) for s in
                  (STATUS_CLEANED, STATUS_EMPTY_REGION, STATUS_NO_PERSON_ORIGINAL, STATUS_NO_PERSON_EDIT)}
        out: dict[str, Any] = {"key": "summary", **(group or {f: "all" for f in self.VARIANT_FIELDS}), "status": ""}
        for name in self.metric_names:
            vals = [r[name] for r in sel if isinstance(r[name], float) and math.isfinite(r[name])]
            out[name] = float(np.mean(vals)) if vals else math.nan
        out.update(n_images=len(sel), n_cleaned=counts[STATUS_CLEANED], n_empty_region=counts[STATUS_EMPTY_REGION],
                   n_no_person=counts[STATUS_NO_PERSON_ORIGINAL] + counts[STATUS_NO_PERSON_EDIT])
        out.update(fid or dict.fromkeys(self.fid_names, math.nan))
        return out

    # ------------------------------------------------------------------ predict
    def on_predict_epoch_start(self) -> None:
        self._grid_count = 0
        self._rows = []

    @torch.no_grad()
    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        out = []
        pred_dir = self.out_dir / "predictions"
        pred_dir.mkdir(parents=True, exist_ok=True)
        for x, keys, eb, res in self._clean(batch):
            for i, key in enumerate(keys):
                to_pil(res.cleaned[i]).save(output_path(pred_dir, eb.names[i], ".png", "the predicted batch's keys"))
                if self.WRITE_PLAIN_PREDICTIONS:
                    to_pil(eb.edit[i]).save(output_path(pred_dir, f"{eb.names[i]}_{self.PLAIN}", ".png", "the predicted batch's keys"))
                out.append({"key": key, **eb.fields, "status": res.status[i],
                            "region_fraction": float(res.masks.region[i].mean())})
            self._save_grid("predict", batch_idx, x, keys, eb, res)
            if self.save_masks:
                self._write_masks(eb.names, res)
        self._rows.extend(out)
        self._grid_count += min(batch["image"].shape[0], max(0, self.num_grid_images - self._grid_count))
        return out

    def on_predict_epoch_end(self) -> None:
        rows = gather_rows(self._rows)
        check_unique(rows, ("key", *self.VARIANT_FIELDS), type(self).__name__)
        if self.trainer.is_global_zero and rows:
            columns = ("key", *self.VARIANT_FIELDS, "status", "region_fraction")
            ordered = sorted(rows, key=self._row_order)
            write_csv(self.out_dir / "predictions" / "status.csv", ordered, columns)
            log_table(self.loggers, "predict/ripple_status", columns, ordered, step=self.global_step)

    # ------------------------------------------------------------------ images
    def _write_masks(self, names: Sequence[str], res: RippleResult) -> None:
        for i, name in enumerate(names):
            for stage in MASK_STAGES:
                save_person_mask(getattr(res.masks, stage)[i], output_path(self.out_dir / "masks", f"{name}_{stage}", ".png", "the batch's keys"))

    def _save_grid(self, split: str, batch_idx: int, x: torch.Tensor, keys: list[str], eb: EditBatch,
                   res: RippleResult) -> None:
        n = min(x.shape[0], self.num_grid_images - self._grid_count)
        if n <= 0 or not self.trainer.is_global_zero:
            return
        mask_rgb = res.masks.region.expand(-1, 3, -1, -1) * 2 - 1
        rows = [(keys[i], [x[i], eb.edit[i], mask_rgb[i], res.cleaned[i]]) for i in range(n)]
        name = f"{split}_b{batch_idx:04d}" + (f"_{eb.label}" if eb.label else "")
        save_grid(output_path(self.out_dir / "grids", name, ".png", "the grid name"), rows, ["original", self.PLAIN_TITLE, "ripple mask", "cleaned"],
                  loggers=self.loggers, key=f"{split}/ripple_{name}", step=self.global_step)

    def configure_optimizers(self) -> None:
        """Evaluation only: nothing is trained."""
        return None


class RippleRemovalEvaluator(RippleRemovalBase):
    """HFGI editing with ripple removal, evaluated (``test``) or applied to files (``predict``).

    The HFGI edits of each test image (one per degree) go through the steps of
    :class:`RippleRemovalBase`; the metric names use ``hfgi`` for the plain edit (``ghost_hfgi``,
    ``fid_hfgi``). ``predict`` writes ``predictions/<key>.<direction><degree>.png`` (cleaned) and
    ``..._hfgi.png`` (plain edit).

    Args:
        parser: human parser (``ripple.parsers.GraphonomyParser`` or ``MaskFolderParser``; the latter
            reads an edit's mask as ``<key>.<direction><degree>``).
        inpainter: background inpainter (``inpainters.lama.LamaInpainter``, ``inpainters.c2f.C2FInpainter``, ...).
        hfgi: architecture of the HFGI networks (``networks.hfgi.pipeline.HFGIConfig`` fields: size,
            style_dim, n_mlp, channel_multiplier, max_channels, fusion_layer, resolution,
            encoder_layers, randomize_noise); ``None`` = the official FFHQ 1024 model.
        hfgi_checkpoint: official HFGI ``ckpt.pt`` (all HFGI weights).
        e4e_checkpoint: official e4e file (used when no HFGI checkpoint is given).
        stylegan2_checkpoint: official StyleGAN2 file (``g_ema``).
        direction: InterfaceGAN direction file (e.g. ``editings/interfacegan_directions/pose.pt``);
            ``None`` draws a fixed random direction (smoke tests with random networks only).
        direction_name: name of the direction in keys, file names and the report.
        degrees: edit strengths; one edit (and one cleaned image) per degree.
        random_direction_seed: seed of the random direction when ``direction`` is ``None``.
        **kwargs: the shared options of :class:`RippleRemovalBase` (kernels, seam, metric networks, outputs).
    """

    PLAIN = "hfgi"
    PLAIN_TITLE = "HFGI edit"
    VARIANT_FIELDS = ("degree",)
    WRITE_PLAIN_PREDICTIONS = True

    def __init__(
        self,
        parser: HumanParser,
        inpainter: Inpainter,
        hfgi: HFGIConfig | None = None,
        hfgi_checkpoint: str | None = None,
        e4e_checkpoint: str | None = None,
        stylegan2_checkpoint: str | None = None,
        direction: str | None = None,
        direction_name: str = "pose",
        degrees: list[float] = [1.0, 2.0, 3.0],
        random_direction_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        if not degrees:
            raise ValueError("RippleRemovalEvaluator: degrees must list at least one edit strength")
        if not direction_name or any(c in direction_name for c in "/\\. "):
            raise ValueError(f"RippleRemovalEvaluator: direction_name {direction_name!r} must be a plain word")
        if hfgi is not None and not isinstance(hfgi, HFGIConfig):
            raise TypeError(f"RippleRemovalEvaluator: hfgi must be a networks.hfgi.pipeline.HFGIConfig (or its fields "
                            f"in the config), got {type(hfgi).__name__}")
        super().__init__(parser, inpainter, **kwargs)
        self.hfgi_config = hfgi or HFGIConfig()
        self.hfgi = self.hfgi_config.build()
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

    def edits(self, batch: dict[str, Any]) -> Iterator[EditBatch]:
        """HFGI inversion of ``batch["image"]``, then one edit per degree along the direction."""
        x, keys = batch["image"], list(batch["key"])
        w = self.hfgi.invert(x)
        for degree in self.degrees:
            edit = self.hfgi.edit_from_latents(x, w, self.direction, degree).clamp(-1, 1)
            if edit.shape != x.shape:
                raise ValueError(
                    f"RippleRemovalEvaluator: the HFGI edit is {tuple(edit.shape[-2:])} but the original images are "
                    f"{tuple(x.shape[-2:])}; set the data resolution to the HFGI generator size "
                    f"({self.hfgi.generator.size})")
            names = [edit_key(k, self.direction_name, degree) for k in keys]
            yield EditBatch(edit, names, names, {"degree": degree}, f"{self.direction_name}{degree:g}")

    def variant_groups(self) -> list[dict[str, Any]]:
        """One summary row per degree."""
        return [{"degree": d} for d in self.degrees]

    def variant_tag(self, group: dict[str, Any]) -> str:
        """``d<degree>``."""
        return f"d{group['degree']:g}"

    def report_header(self) -> dict[str, Any]:
        """Direction and degrees."""
        return {"direction": self.direction_name, "degrees": self.degrees}


class EditPairsRippleRemoval(RippleRemovalBase):
    """Ripple removal of edits made by any editor: (original, edit) pairs from disk, no HFGI network.

    Batches come from :class:`datamodules.edit_pairs.EditPairsDataModule` (``image``, ``edit``,
    ``key``, ``edit_key``) and go through the steps of :class:`RippleRemovalBase`.

    Person masks: when the data module has ``person_masks``, they are read with
    :class:`ripple.parsers.MaskFolderParser` (``<stem>.png`` for the original, ``<stem>_edit.png``
    for the edit) and ``parser`` is not built; otherwise ``parser`` parses both images. Metric names
    use ``edit`` for the plain edit (``ghost_edit``, ``fid_edit``). ``predict`` writes
    ``predictions/<stem>.png`` (the cleaned edit).

    Args:
        inpainter: background inpainter (``inpainters.classical.TeleaInpainter`` needs no weights).
        parser: human parser used when the data has no person masks (e.g. ``ripple.parsers.GraphonomyParser``);
            built only then (``class_path`` + ``init_args`` in the config).
        **kwargs: the shared options of :class:`RippleRemovalBase` (kernels, seam, metric networks, outputs).
    """

    def __init__(self, inpainter: Inpainter, parser: Callable[[], HumanParser] | None = None, **kwargs: Any) -> None:
        super().__init__(None, inpainter, **kwargs)
        self._parser_factory = parser
        self._built_parser: HumanParser | None = None

    def setup(self, stage: str) -> None:
        super().setup(stage)
        self.remover.parser = self._resolve_parser()

    def _resolve_parser(self) -> HumanParser:
        datamodule = getattr(self.trainer, "datamodule", None)
        masks = getattr(datamodule, "person_masks", None)
        if masks is not None:
            return MaskFolderParser(str(masks), kind="mask", suffix=".png")
        if self._parser_factory is None:
            raise ValueError(
                "EditPairsRippleRemoval: no person masks and no parser. Give the data module's person_masks folder "
                "(--data.init_args.person_masks=<dir> with <stem>.png and <stem>_edit.png, see docs/ripple.md) or a "
                "parser (model.init_args.parser, e.g. ripple.parsers.GraphonomyParser as in configs/ripple/pairs.yaml)")
        if self._built_parser is None:
            self._built_parser = self._parser_factory()
            if not isinstance(self._built_parser, HumanParser):
                raise TypeError(f"EditPairsRippleRemoval: parser built a {type(self._built_parser).__name__}, "
                                "not a ripple.parsers.HumanParser")
        return self._built_parser

    def edits(self, batch: dict[str, Any]) -> Iterator[EditBatch]:
        """The batch's own edits (``batch["edit"]``)."""
        if "edit" not in batch:
            raise KeyError(f"EditPairsRippleRemoval: the batch has no 'edit' images (keys: {sorted(batch)}); use "
                           "datamodules.edit_pairs.EditPairsDataModule (configs/ripple/pairs.yaml)")
        keys = list(batch["key"])
        parser_keys = list(batch.get("edit_key") or [f"{k}_edit" for k in keys])
        yield EditBatch(batch["edit"], keys, parser_keys, {}, "")

    def report_header(self) -> dict[str, Any]:
        """The pair folders (from the data module's ``describe``)."""
        describe = getattr(getattr(self.trainer, "datamodule", None), "describe", None)
        return {"edits": "pairs", **({"data": describe()} if callable(describe) else {})}
