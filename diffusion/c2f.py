"""The coarse-to-fine (C2F) inpainting model as a plain ``nn.Module`` (seed 000; docs/architecture.md, Method).

:class:`C2FModel` holds what is learned: one :class:`diffusion.denoiser.InpaintingDenoiser` per
pyramid stage (default 256 -> 512 -> 1024) around an :class:`networks.c2f.unet.InpaintingUNet`,
a :class:`networks.c2f.guidance_combiner.GuidanceCombiner` between consecutive stages, and the
LCG category embedding all stages read. Stage ``s > 0`` gets 3 extra input channels: the
upsampled output of stage ``s - 1`` corrected by its combiner (known pixels exact, a learned
correction in the hole). It also carries its default sampler settings (:class:`C2FSampling`).

Sampling is the pure function :func:`diffusion.c2f_sampling.sample_c2f`; training (which stage,
losses, logging) is :class:`lightning_modules.c2f_diffusion.C2FDiffusionModule`. Neither this
module nor the sampler imports Lightning.

Checkpoints (:meth:`C2FModel.save`, :meth:`C2FModel.from_checkpoint`; both read with
``weights_only=True``): a dict with ``"c2f_model": {"format", "config", "prefix"}`` (plain data:
the constructor arguments and the key prefix of the weights) and ``"state_dict"``. The
LightningModule writes the same entry into its checkpoints (prefix ``"model."``), so a training
checkpoint and a standalone model file load the same way. A ``.safetensors`` path (written by
``python -m inpainters.export``) holds the weights as safetensors and the entry as JSON in the
file's metadata (key ``"c2f_model"``).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import torch
from torch import nn

from diffusion.denoiser import InpaintingDenoiser, Prediction
from diffusion.guidance import GuidanceMode, check_guidance, guidance_contexts
from diffusion.pyramid import degrade_condition, downsample_image, downsample_mask, stage_sizes
from diffusion.sampling import TimestepSpacing
from diffusion.schedules import ScheduleName
from masks.types import Category
from networks.c2f.category_embedding import EmbeddingConfig
from networks.c2f.guidance_combiner import GuidanceCombiner, PasteCombiner
from networks.c2f.unet import UNetConfig
from networks.checkpoints import (
    CheckpointError,
    CheckpointFormat,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    atomic_save,
    extract_state,
    load_state,
    read_checkpoint,
)
from networks.dataclass_config import as_dataclass

__all__ = ["C2FModel", "C2FSampling", "C2F_FORMAT", "C2F_META_KEY", "category_ids"]

#: checkpoint entry that describes the C2F model stored in the file
C2F_META_KEY = "c2f_model"
C2F_FORMAT_NAME = "restorelab.c2f/1"
C2F_FORMAT = CheckpointFormat(
    name="C2F checkpoint",
    origin="Train one with `python -m main fit --config configs/c2f/<dataset>.yaml` (runs/<run>/checkpoints/last.ckpt), "
    "or use the bundled assets/c2f_synthetic_demo.ckpt.",
)


@dataclass
class C2FSampling:
    """Default sampler settings stored with a C2F model.

    Args:
        steps: DDIM steps per stage (coarse to fine).
        gains: classifier-free guidance gain per stage: large at the coarsest stage, smaller above.
        eta: DDIM eta (0 = deterministic).
        cfg_batched: conditional and unconditional passes as one doubled-batch forward (False:
            two forwards, less peak memory).
    """

    steps: list[int] = field(default_factory=lambda: [60, 40, 30])
    gains: list[float] = field(default_factory=lambda: [4.5, 3.0, 1.5])
    eta: float = 0.0
    cfg_batched: bool = True


def per_stage(value: Any, n: int, name: str) -> list[Any]:
    """One ``value`` for each of ``n`` stages: a scalar repeated, or a list of exactly ``n`` entries."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"C2FModel: {name} needs one value or one per stage ({n}), got {list(value)}")
        return list(value)
    return [value] * n


def category_ids(category: int | str | torch.Tensor | Sequence[int], b: int, device: torch.device | str) -> torch.Tensor:
    """``(B,)`` LCG category ids from ``"background"`` / ``"foreground"``, one id, or one id per image."""
    if isinstance(category, str):
        names = {"foreground": Category.FOREGROUND, "background": Category.BACKGROUND}
        if category not in names:
            raise ValueError(f"category must be 'foreground' or 'background' (or 0 / 1), got {category!r}")
        category = int(names[category])
    c = torch.as_tensor(category, device=device).long().reshape(-1)
    if c.numel() == 1:
        c = c.expand(b)
    if c.numel() != b:
        raise ValueError(f"category must be one id or one per image ({b}), got {c.numel()}")
    return c


class C2FModel(nn.Module):
    """Coarse-to-fine inpainter: per-stage denoisers, guidance combiners and the LCG embedding.

    Args:
        unets: one :class:`networks.c2f.unet.UNetConfig` (or dict of its fields) per stage; the
            token width and the extra condition channels (0 at stage 0, 3 above) are set here.
        embedding: :class:`networks.c2f.category_embedding.EmbeddingConfig` (or dict); must match
            the LCG checkpoint the embedding is loaded from.
        resolutions: stage resolutions, coarse to fine (each divides the last).
        guidance: ``"fg_bg"`` (the requested category ``c`` against the other one ``c'``, ``x_c' + s (x_c - x_c')``; PixelHacker's form for foreground fills)
            or ``"learned_null"`` (learned null tokens, ``x_null + s (x_c - x_null)``; needs ``embedding.null_embedding``).
        combiner_width: feature channels of each guidance combiner.
        combiner_depth: residual blocks of each guidance combiner.
        combiner: ``"learned"`` (the guidance combiner) or ``"paste"`` (ablation: only paste the known
            pixels over the upsampled lower stage).
        lcg: use the latent category guidance; False (ablation) gives every sample the same (background)
            token set, so guidance has nothing to contrast and the gains do nothing.
        schedule: noise schedule of every stage (``scaled_linear``, ``linear``, ``cosine``).
        num_train_timesteps: training timesteps ``T``.
        hole_weight: diffusion-loss weight of hole pixels.
        known_weight: diffusion-loss weight of known pixels.
        prediction: network target of every stage (``epsilon``, ``v``, ``x0``).
        min_snr_gamma: min-SNR-gamma loss weighting (None = off).
        zero_terminal_snr: rescale the schedule to zero terminal SNR (Lin et al. 2024; v or x0 target only);
            one value for every stage or one per stage.
        shift_base: simple-diffusion log-SNR shift ``2 log(shift_base / resolution)`` at each stage's
            resolution (Hoogeboom et al. 2023: 64); None = no shift; one value or one per stage.
        timestep_spacing: DDIM timesteps, ``linspace`` or ``trailing`` (with zero terminal SNR); one value
            or one per stage. Missing in a checkpoint = today's (no rescale, no shift, linspace).
        sampling: default sampler settings (:class:`C2FSampling` or dict; one entry per stage).
    """

    def __init__(
        self,
        unets: Sequence[UNetConfig | dict[str, Any]],
        embedding: EmbeddingConfig | dict[str, Any] | None = None,
        resolutions: Sequence[int] = (256, 512, 1024),
        guidance: GuidanceMode = "fg_bg",
        combiner_width: int = 32,
        combiner_depth: int = 2,
        combiner: Literal["learned", "paste"] = "learned",
        lcg: bool = True,
        schedule: ScheduleName = "scaled_linear",
        num_train_timesteps: int = 1000,
        hole_weight: float = 1.0,
        known_weight: float = 0.1,
        prediction: Prediction = "v",
        min_snr_gamma: float | None = 5.0,
        zero_terminal_snr: bool | Sequence[bool] = False,
        shift_base: int | None | Sequence[int | None] = None,
        timestep_spacing: TimestepSpacing | Sequence[TimestepSpacing] = "linspace",
        sampling: C2FSampling | dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        n = len(resolutions)
        resolutions = [int(r) for r in resolutions]
        if n == 0 or list(resolutions) != sorted(set(resolutions)) or any(resolutions[-1] % r for r in resolutions):
            raise ValueError(f"C2FModel: resolutions must increase strictly and each divide the last, got {resolutions}")
        if len(unets) != n:
            raise ValueError(f"C2FModel: unets needs one entry per resolution ({n} for {resolutions}), got {len(unets)}")
        self.resolutions, self.guidance = resolutions, guidance
        reserved = {"context_dim": "the embedding's dim", "cond_channels": "set per stage by the C2F model"}
        self.unet_configs = [as_dataclass(UNetConfig, u, f"unets[{s}]", reserved) for s, u in enumerate(unets)]
        self.embedding_config = as_dataclass(EmbeddingConfig, embedding, "embedding")
        self.sampling = as_dataclass(C2FSampling, sampling, "sampling") if sampling is not None else C2FSampling(
            steps=[60, 40, 30][:n] if n <= 3 else [30] * n, gains=[4.5, 3.0, 1.5][:n] if n <= 3 else [1.5] * n
        )
        self.check_sampling(self.sampling.steps, self.sampling.gains, "sampling")
        self.embedding = self.embedding_config.build()
        check_guidance(guidance, self.embedding, "C2FModel")
        dim = self.embedding.dim
        zero_terminal_snr = [bool(z) for z in per_stage(zero_terminal_snr, n, "zero_terminal_snr")]
        shift_base = [None if b is None else int(b) for b in per_stage(shift_base, n, "shift_base")]
        timestep_spacing = [str(x) for x in per_stage(timestep_spacing, n, "timestep_spacing")]
        self.stages = nn.ModuleList(
            InpaintingDenoiser(cfg.build(dim, 0 if s == 0 else 3), schedule, num_train_timesteps, hole_weight, known_weight,
                               prediction, min_snr_gamma, zero_terminal_snr[s],
                               None if shift_base[s] is None else resolutions[s], shift_base[s] or 64, timestep_spacing[s])
            for s, cfg in enumerate(self.unet_configs)
        )
        if combiner not in ("learned", "paste"):
            raise ValueError(f"C2FModel: combiner must be 'learned' or 'paste', got {combiner!r}")
        self.combiners = nn.ModuleList(
            GuidanceCombiner(combiner_width, combiner_depth, token_dim=dim) if combiner == "learned" else PasteCombiner()
            for _ in range(n - 1)
        )
        self.lcg = bool(lcg)
        self._config = dict(
            resolutions=resolutions, guidance=guidance, combiner_width=combiner_width, combiner_depth=combiner_depth,
            combiner=combiner, lcg=self.lcg,
            schedule=schedule, num_train_timesteps=num_train_timesteps, hole_weight=hole_weight, known_weight=known_weight,
            prediction=prediction, min_snr_gamma=min_snr_gamma, zero_terminal_snr=zero_terminal_snr, shift_base=shift_base,
            timestep_spacing=timestep_spacing,
        )

    # ------------------------------------------------------------------ structure
    def config(self) -> dict[str, Any]:
        """Constructor arguments as plain data (``C2FModel(**model.config())`` rebuilds the architecture)."""
        return dict(
            unets=[u.to_dict() for u in self.unet_configs], embedding=self.embedding_config.to_dict(),
            sampling=asdict(self.sampling), **self._config,
        )

    @property
    def num_stages(self) -> int:
        """Number of pyramid stages."""
        return len(self.resolutions)

    @property
    def size_multiple(self) -> int:
        """Image H and W must be multiples of this (every stage size divisible by its U-Net's factor)."""
        top, m = self.resolutions[-1], 1
        for r, stage in zip(self.resolutions, self.stages):
            f = (top // r) * stage.unet.downsample_factor
            m = m * f // math.gcd(m, f)
        return m

    def check_size(self, h: int, w: int, where: str) -> None:
        """Raise ``ValueError`` unless an ``h x w`` image fits every stage (see :attr:`size_multiple`)."""
        m = self.size_multiple
        if h % m or w % m:
            raise ValueError(
                f"{where}: image size {h}x{w} is not a multiple of {m} (stage factor x U-Net downsampling for "
                f"resolutions {self.resolutions}); set the data resolution to a multiple of {m}"
            )

    def check_sampling(self, steps: Sequence[int], gains: Sequence[float], where: str) -> None:
        """Raise ``ValueError`` unless ``steps`` and ``gains`` have one valid entry per stage."""
        n = len(self.resolutions)
        if len(steps) != n or len(gains) != n:
            raise ValueError(f"{where}: steps {list(steps)} and gains {list(gains)} need one entry per stage ({n})")
        if any(int(s) < 1 for s in steps):
            raise ValueError(f"{where}: DDIM steps must be >= 1 per stage, got {list(steps)}")

    # ------------------------------------------------------------------ conditioning
    def category_tokens(self, category: torch.Tensor) -> torch.Tensor:
        """LCG tokens ``(B, n, dim)`` of each sample's category (all background without LCG)."""
        return self.embedding.tokens(category if self.lcg else torch.full_like(category, int(Category.BACKGROUND)))

    def guidance_tokens(self, category: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Conditional and unconditional token sets for classifier-free guidance (identical without LCG)."""
        if not self.lcg:
            tokens = self.category_tokens(category)
            return tokens, tokens
        return guidance_contexts(self.embedding, category, self.guidance)

    def condition(
        self, stage: int, previous: torch.Tensor, masked_image: torch.Tensor, mask: torch.Tensor, tokens: torch.Tensor
    ) -> torch.Tensor:
        """Condition of ``stage > 0``: the upsampled lower-stage output corrected by the stage's combiner."""
        return self.combiners[stage - 1](previous, masked_image, mask, tokens)

    def stage_inputs(
        self,
        image: torch.Tensor,
        mask: torch.Tensor,
        category: torch.Tensor,
        stage: int,
        blur_sigma: Sequence[float],
        noise_std: Sequence[float],
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor | None]:
        """Training inputs of ``stage`` from a finest-resolution batch.

        The pyramid is area / max-pool (:mod:`diffusion.pyramid`); the condition of stage ``s > 0``
        is the ground truth at stage ``s - 1`` degraded by :func:`diffusion.pyramid.degrade_condition`
        (``blur_sigma`` / ``noise_std`` ranges; standing in for the real lower-stage output, so each
        stage trains on its own), upsampled and passed through the combiner.

        Returns:
            ``target``, ``mask`` at the stage's size, the category ``tokens``, ``raw_condition``
            (degraded upsampled input, stages > 0) and ``condition`` (combiner output).
        """
        sizes = stage_sizes(image.shape[-2:], self.resolutions)
        target = downsample_image(image, sizes[stage])
        m = downsample_mask(mask, sizes[stage])
        tokens = self.category_tokens(category)
        raw = cond = None
        if stage > 0:
            lo = sizes[stage - 1]
            raw = degrade_condition(
                downsample_image(image, lo), downsample_mask(mask, lo), sizes[stage], blur_sigma, noise_std, generator
            )
            cond = self.condition(stage, raw, target * (1 - m), m, tokens)
        return {"target": target, "mask": m, "tokens": tokens, "raw_condition": raw, "condition": cond}

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_entry(self, prefix: str = "") -> dict[str, Any]:
        """The ``"c2f_model"`` entry describing this model in a checkpoint whose weights sit under ``prefix``."""
        return {"format": C2F_FORMAT_NAME, "config": self.config(), "prefix": prefix}

    def save(self, path: str | os.PathLike) -> Path:
        """Write a standalone model file: a torch file (plain data + tensors; loads with ``weights_only=True``),
        or, for a ``.safetensors`` path, a safetensors file with the ``c2f_model`` entry as JSON in its metadata."""
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        if Path(path).suffix == SAFETENSORS_SUFFIX:
            return _save_safetensors(state, self.checkpoint_entry(), Path(path))
        return atomic_save({C2F_META_KEY: self.checkpoint_entry(), "state_dict": state}, path)

    @staticmethod
    def checkpoint_meta(ckpt: Any, source: str) -> Mapping[str, Any]:
        """The ``"c2f_model"`` entry of a loaded checkpoint; a clear error for any other file."""
        meta = ckpt.get(C2F_META_KEY) if isinstance(ckpt, Mapping) else None
        if isinstance(meta, Mapping) and meta.get("format") == C2F_FORMAT_NAME:
            return meta
        hp = ckpt.get("hyper_parameters") if isinstance(ckpt, Mapping) else None
        sd = ckpt.get("state_dict") if isinstance(ckpt, Mapping) else None
        prefixes = sorted({str(k).split(".")[0] for k in sd})[:6] if isinstance(sd, Mapping) else []
        written_by = hp.get("_class_path", "another module") if isinstance(hp, Mapping) else "another module"
        raise CheckpointMismatchError(
            f"{source} was not written by C2FDiffusionModule or C2FModel.save (no {C2F_META_KEY!r} entry of format "
            f"{C2F_FORMAT_NAME}; written by {written_by}, state_dict prefixes {prefixes}). An LCG checkpoint goes to "
            "model.init_args.lcg_checkpoint instead; other modules' checkpoints cannot be loaded"
        )

    def check_layout(self, meta: Mapping[str, Any], source: str) -> None:
        """Raise unless the checkpoint entry ``meta`` has this model's stage layout (resolutions)."""
        stored = list(meta["config"]["resolutions"])
        if stored != self.resolutions:
            raise CheckpointMismatchError(
                f"{source} holds a C2F model with {len(stored)} stages at resolutions {stored}, but this model has "
                f"{self.num_stages} stages at {self.resolutions}; set model.init_args.resolutions (and the per-stage "
                "lists) to the checkpoint's values"
            )

    def load_weights_from(self, ckpt: Any, source: str) -> None:
        """Copy the weights of a loaded C2F checkpoint (same architecture) into this model."""
        meta = self.checkpoint_meta(ckpt, source)
        self.check_layout(meta, source)
        state = extract_state(ckpt, source, prefix=str(meta.get("prefix", "")))
        load_state(self, state, source, hint="Use the unets / embedding / combiner settings of the run that wrote it.")

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, **overrides: Any) -> "C2FModel":
        """Rebuild a model from a standalone file (torch or ``.safetensors``) or a ``C2FDiffusionModule`` checkpoint, in eval mode.

        ``overrides`` replace stored constructor arguments that do not change the weights' layout
        (e.g. ``sampling``); the weights must fit exactly.

        Raises:
            networks.checkpoints.CheckpointError: missing, unsafe or unreadable file; another
                module's checkpoint (with a hint where it belongs); weights that do not fit.
        """
        ckpt = _read_safetensors(Path(path)) if Path(path).suffix == SAFETENSORS_SUFFIX else read_checkpoint(path, C2F_FORMAT)
        config = dict(cls.checkpoint_meta(ckpt, str(path))["config"])
        config.update(overrides)
        model = cls(**config)
        model.load_weights_from(ckpt, str(path))
        return model.eval()


# ---------------------------------------------------------------------- safetensors (save / load)
SAFETENSORS_SUFFIX = ".safetensors"


def _save_safetensors(state: dict[str, torch.Tensor], entry: Mapping[str, Any], path: Path) -> Path:
    """Write ``state`` as safetensors with ``{"format", "c2f_model": JSON of entry}`` metadata, atomically."""
    from safetensors.torch import save as safetensors_bytes

    data = safetensors_bytes({k: v.contiguous() for k, v in state.items()},
                             metadata={"format": "pt", C2F_META_KEY: json.dumps(dict(entry))})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"cannot write {path}: {err.strerror or err} (check that {path.parent} is writable)") from None
    return path


def _read_safetensors(path: Path) -> dict[str, Any]:
    """A ``.safetensors`` C2F export as the checkpoint dict ``{"c2f_model": entry, "state_dict": tensors}``.

    Reading a safetensors file never runs code. Raises the :class:`networks.checkpoints.CheckpointError`
    family naming ``path``: missing file, unreadable header, no C2F entry in the metadata.
    """
    from safetensors import SafetensorError, safe_open

    if not path.exists():
        raise CheckpointNotFoundError(f"{C2F_FORMAT.name} not found: {str(path)!r}. {C2F_FORMAT.origin} "
                                      "Export one with `python -m inpainters.export CHECKPOINT OUT.safetensors`.")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a .safetensors file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path}: cannot read this .safetensors file ({path.stat().st_size} bytes): {reason}. The file is "
            "truncated, corrupt or not safetensors; export it again with `python -m inpainters.export`"
        ) from None
    raw = metadata.get(C2F_META_KEY)
    try:
        entry = json.loads(raw) if raw is not None else None
    except json.JSONDecodeError:
        entry = None
    if not isinstance(entry, Mapping) or entry.get("format") != C2F_FORMAT_NAME or not isinstance(entry.get("config"), Mapping):
        raise CheckpointMismatchError(
            f"{path} is a safetensors file without a C2F model description (metadata key {C2F_META_KEY!r} holding "
            f"the {C2F_FORMAT_NAME} config as JSON; found metadata keys {sorted(metadata)[:8]}). Only files written "
            "by `python -m inpainters.export` / C2FModel.save('....safetensors') can be loaded"
        )
    return {C2F_META_KEY: dict(entry), "state_dict": state}
