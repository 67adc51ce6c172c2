"""HFGI inversion and editing: e4e + StyleGAN2 + consultation encoder + ADA in one module.

Data flow (official HFGI inference, with the resolution configurable):

1. ``w = e4e(x) + latent_avg`` (W+), ``x`` at ``resolution`` (256 officially).
2. Low-fidelity image ``lo = resize(clamp(G(w), -1, 1), resolution)``; distortion map
   ``res = x - lo``.
3. For an edit, ``w_e = w + degree * direction`` and ``lo_e = resize(clamp(G(w_e)))``;
   ADA aligns the distortion map to the edited image: ``res_a = ADA(cat(res, lo_e))``.
4. ``(scale, shift) = E_c(res_a)`` are fused into the generator: ``out = G(w_e, (scale, shift))``.

Reconstruction is the same with degree 0 (``lo_e = lo``). Outputs are at the generator's
resolution, in [-1, 1] (not clamped), like the official code.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from networks.hfgi.consultation_encoder import ConsultationEncoder
from networks.hfgi.distortion_aligner import DistortionAligner
from networks.hfgi.e4e import Encoder4Editing
from networks.hfgi.editing import edit_latents
from networks.hfgi.official_checkpoints import (
    generator_size_of,
    load_e4e,
    load_hfgi,
    load_stylegan2,
    normalize_latent_avg,
)
from networks.hfgi.stylegan2 import StyleGAN2Generator

__all__ = ["HFGIConfig", "HFGIPipeline", "resize_images"]

PathLike = str | os.PathLike


def resize_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of ``(B, C, H, W)`` to ``size x size`` (antialiased when shrinking); no-op if equal."""
    if x.shape[-2:] == (size, size):
        return x
    shrink = x.shape[-1] > size or x.shape[-2] > size
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)


@dataclass(frozen=True)
class HFGIConfig:
    """Architecture of an HFGI pipeline: the arguments of :meth:`HFGIPipeline.build` (defaults: official FFHQ 1024).

    Attributes:
        size: generator output size (1024 for FFHQ).
        style_dim: W dimension (512).
        n_mlp: mapping-network layers (8).
        channel_multiplier: StyleGAN2 channel multiplier (2 = config-f).
        max_channels: cap of the generator's channels (None = the official 512); small for tests.
        fusion_layer: generator layer where E_c's scale / shift are fused (7 = the 64x64 block).
        resolution: e4e input and distortion-map resolution (256).
        encoder_layers: IR-SE depth of the e4e encoder (50).
        randomize_noise: fresh generator noise per call instead of the fixed buffers.
    """

    size: int = 1024
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    max_channels: int | None = None
    fusion_layer: int = 7
    resolution: int = 256
    encoder_layers: int = 50
    randomize_noise: bool = False

    def build(self) -> "HFGIPipeline":
        """A random-init pipeline of this architecture (:meth:`HFGIPipeline.build`)."""
        return HFGIPipeline.build(**asdict(self))


class HFGIPipeline(nn.Module):
    """HFGI: e4e inversion, distortion consultation and InterfaceGAN editing (plain ``nn.Module``).

    Build with :meth:`build` (random init), :meth:`from_checkpoints` (official e4e / StyleGAN2
    / HFGI files) or :meth:`from_hfgi_checkpoint` (one official HFGI ``ckpt.pt``).

    Args:
        encoder: e4e encoder (:class:`networks.hfgi.e4e.Encoder4Editing`).
        generator: StyleGAN2 generator with a fusion layer (:class:`networks.hfgi.stylegan2.StyleGAN2Generator`).
        consultation: consultation encoder E_c (:class:`networks.hfgi.consultation_encoder.ConsultationEncoder`).
        aligner: ADA (:class:`networks.hfgi.distortion_aligner.DistortionAligner`).
        latent_avg: ``(n_styles, style_dim)`` or ``(style_dim,)`` mean latent added to the e4e
            output; None = zeros (random-init models).
        resolution: e4e input and distortion-map resolution (256 officially). Images of another
            size are resized to it (a one-time warning says so).
        randomize_noise: draw fresh generator noise on every call (official training) instead
            of the fixed noise buffers (official inference; deterministic).
    """

    def __init__(
        self,
        encoder: Encoder4Editing,
        generator: StyleGAN2Generator,
        consultation: ConsultationEncoder,
        aligner: DistortionAligner,
        latent_avg: torch.Tensor | None = None,
        resolution: int = 256,
        randomize_noise: bool = False,
    ) -> None:
        super().__init__()
        if encoder.style_count != generator.n_latent or encoder.style_dim != generator.style_dim:
            raise ValueError(
                f"e4e predicts {encoder.style_count}x{encoder.style_dim} codes but the generator takes "
                f"{generator.n_latent}x{generator.style_dim}; build both for the same size/style_dim"
            )
        if generator.fusion_layer is None:
            raise ValueError("HFGIPipeline needs a generator with a fusion_layer (e.g. 7 for the 64x64 block)")
        if consultation.out_channels != generator.fusion_channels or consultation.out_size != generator.fusion_resolution:
            raise ValueError(
                f"consultation encoder outputs {consultation.out_channels}ch at {consultation.out_size}px but the "
                f"generator's fusion layer {generator.fusion_layer} has {generator.fusion_channels}ch at "
                f"{generator.fusion_resolution}px"
            )
        if resolution % 8:
            raise ValueError(f"resolution must be divisible by 8 (ADA has three stride-2 stages), got {resolution}")
        self.encoder = encoder
        self.generator = generator
        self.consultation = consultation
        self.aligner = aligner
        self.resolution = resolution
        self.randomize_noise = randomize_noise
        la = normalize_latent_avg(latent_avg, generator.n_latent, generator.style_dim, "latent_avg")
        if la is None:
            la = torch.zeros(generator.n_latent, generator.style_dim)
        self.register_buffer("latent_avg", la)
        self._warned_resize = False

    # ----------------------------------------------------------------- construction
    @classmethod
    def build(
        cls,
        size: int = 1024,
        style_dim: int = 512,
        n_mlp: int = 8,
        channel_multiplier: int = 2,
        max_channels: int | None = None,
        fusion_layer: int = 7,
        resolution: int = 256,
        encoder_layers: int = 50,
        randomize_noise: bool = False,
    ) -> "HFGIPipeline":
        """Random-init pipeline in eval mode (official shapes for the defaults; see the network classes)."""
        generator = StyleGAN2Generator(
            size, style_dim, n_mlp, channel_multiplier, fusion_layer=fusion_layer, max_channels=max_channels
        )
        encoder = Encoder4Editing(size, encoder_layers, "ir_se", style_dim=style_dim)
        consultation = ConsultationEncoder(generator.fusion_channels, generator.fusion_resolution)
        return cls(encoder, generator, consultation, DistortionAligner(), None, resolution, randomize_noise).eval()

    @classmethod
    def from_checkpoints(
        cls,
        hfgi: PathLike | None = None,
        e4e: PathLike | None = None,
        stylegan2: PathLike | None = None,
        size: int = 1024,
        fusion_layer: int = 7,
        resolution: int = 256,
        randomize_noise: bool = False,
        style_dim: int = 512,
        n_mlp: int = 8,
        channel_multiplier: int = 2,
        max_channels: int | None = None,
    ) -> "HFGIPipeline":
        """Pipeline built with :meth:`build` (official architecture by default) and loaded from files.

        ``hfgi`` (``ckpt.pt``) provides everything. Otherwise ``e4e`` (``e4e_ffhq_encode.pt``)
        provides encoder, generator and latent_avg, and E_c / ADA start from random init (the
        start of HFGI training). ``stylegan2`` (``stylegan2-ffhq-config-f.pt``) loads ``g_ema``
        into the generator (after e4e; used alone it gives a random-init encoder).
        The pipeline is returned in eval mode (BatchNorm uses its stored statistics).
        """
        if hfgi is None and e4e is None and stylegan2 is None:
            raise ValueError("from_checkpoints needs at least one of hfgi=, e4e=, stylegan2=")
        pipe = cls.build(
            size=size,
            style_dim=style_dim,
            n_mlp=n_mlp,
            channel_multiplier=channel_multiplier,
            max_channels=max_channels,
            fusion_layer=fusion_layer,
            resolution=resolution,
            randomize_noise=randomize_noise,
        )
        pipe.load_official(hfgi=hfgi, e4e=e4e, stylegan2=stylegan2)
        return pipe

    def load_official(
        self, hfgi: PathLike | None = None, e4e: PathLike | None = None, stylegan2: PathLike | None = None
    ) -> None:
        """Load official files into this pipeline in place (same rules as :meth:`from_checkpoints`)."""
        latent_avg = None
        if hfgi is not None:
            latent_avg = load_hfgi(hfgi, self.encoder, self.generator, self.consultation, self.aligner)
        elif e4e is not None:
            latent_avg = load_e4e(e4e, self.encoder, self.generator)
        if stylegan2 is not None:
            g_avg = load_stylegan2(stylegan2, self.generator)
            latent_avg = latent_avg if latent_avg is not None else g_avg
        if latent_avg is not None:
            self.latent_avg.copy_(latent_avg)

    @classmethod
    def from_hfgi_checkpoint(
        cls,
        path: PathLike,
        resolution: int = 256,
        fusion_layer: int = 7,
        randomize_noise: bool = False,
        style_dim: int = 512,
        n_mlp: int = 8,
        channel_multiplier: int = 2,
        max_channels: int | None = None,
    ) -> "HFGIPipeline":
        """Pipeline from one official HFGI ``ckpt.pt``; the generator size is read from the file.

        The other architecture arguments default to the official FFHQ model (see :meth:`build`).
        """
        size = generator_size_of(path, "hfgi") or 1024
        return cls.from_checkpoints(
            hfgi=path,
            size=size,
            fusion_layer=fusion_layer,
            resolution=resolution,
            randomize_noise=randomize_noise,
            style_dim=style_dim,
            n_mlp=n_mlp,
            channel_multiplier=channel_multiplier,
            max_channels=max_channels,
        )

    # ----------------------------------------------------------------- properties
    @property
    def n_styles(self) -> int:
        """Number of W+ codes (18 for 1024)."""
        return self.generator.n_latent

    @property
    def style_dim(self) -> int:
        """Width of each W+ code (512 officially)."""
        return self.generator.style_dim

    # ----------------------------------------------------------------- steps
    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Check ``x`` is ``(B, 3, H, W)`` and resize it to ``resolution`` (warning once)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"HFGIPipeline expects images (B, 3, H, W) in [-1, 1], got {tuple(x.shape)}")
        if x.shape[-2:] != (self.resolution, self.resolution):
            if not self._warned_resize:
                warnings.warn(
                    f"HFGI: input images are {tuple(x.shape[-2:])}, the encoder works at "
                    f"{self.resolution}x{self.resolution}; resizing them (this note is shown once)",
                    stacklevel=2,
                )
                self._warned_resize = True
            x = resize_images(x, self.resolution)
        return x

    def invert(self, x: torch.Tensor) -> torch.Tensor:
        """e4e inversion: W+ codes ``(B, n_styles, style_dim)`` including ``latent_avg``."""
        return self.encoder(self.prepare(x)) + self.latent_avg

    def synthesize(self, w: torch.Tensor, conditions: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Generator output at full resolution for W+ codes (optionally with HFGI conditions)."""
        return self.generator(w, conditions, input_is_latent=True, randomize_noise=self.randomize_noise)

    def low_fidelity(self, w: torch.Tensor) -> torch.Tensor:
        """``resize(clamp(G(w), -1, 1), resolution)``: the plain e4e image at the working resolution."""
        return resize_images(self.synthesize(w).clamp(-1, 1), self.resolution)

    def distortion(self, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x - lo, lo)`` with ``lo = low_fidelity(w)``; ``x`` is resized to ``resolution``."""
        lo = self.low_fidelity(w)
        return self.prepare(x) - lo, lo

    def consult(self, distortion: torch.Tensor, target_image: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """ADA-align ``distortion`` to ``target_image`` and encode it: ``(aligned, (scale, shift))``."""
        aligned = self.aligner(torch.cat((distortion, target_image), dim=1))
        return aligned, self.consultation(aligned)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """High-fidelity HFGI reconstruction ``(B, 3, size, size)`` of images ``x``."""
        return self.reconstruct_from_latents(x, self.invert(x))

    def reconstruct_from_latents(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """As :meth:`reconstruct` with precomputed inversion ``w``."""
        res, lo = self.distortion(x, w)
        _, conditions = self.consult(res, lo)
        return self.synthesize(w, conditions)

    def edit(self, x: torch.Tensor, direction: torch.Tensor, degree: float | torch.Tensor) -> torch.Tensor:
        """HFGI edit of images ``x`` along ``direction`` by ``degree`` -> ``(B, 3, size, size)``.

        ``direction`` as from :func:`networks.hfgi.editing.load_direction` (``(1, D)`` or
        ``(1, n_styles, D)``); ``degree`` a number or a ``(B,)`` tensor. Degree 0 equals
        :meth:`reconstruct`.
        """
        w = self.invert(x)
        return self.edit_from_latents(x, w, direction, degree)

    def edit_from_latents(
        self, x: torch.Tensor, w: torch.Tensor, direction: torch.Tensor, degree: float | torch.Tensor
    ) -> torch.Tensor:
        """As :meth:`edit` with precomputed inversion ``w`` (saves the e4e pass for several edits)."""
        res, _ = self.distortion(x, w)
        w_edit = edit_latents(w, direction, degree)
        lo_edit = self.low_fidelity(w_edit)
        _, conditions = self.consult(res, lo_edit)
        return self.synthesize(w_edit, conditions)

    def edit_grid(
        self, x: torch.Tensor, directions: Mapping[str, torch.Tensor], degrees: Sequence[float]
    ) -> dict[str, dict[float, torch.Tensor]]:
        """``{name: {degree: edited images}}`` for every direction and degree (one inversion)."""
        w = self.invert(x)
        return {
            name: {float(dg): self.edit_from_latents(x, w, d, float(dg)) for dg in degrees}
            for name, d in directions.items()
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`reconstruct`."""
        return self.reconstruct(x)
