"""StyleGAN2 generator, state-dict compatible with rosinality's ``Generator`` (``g_ema``).

Module names, parameter names and shapes follow the public rosinality/stylegan2-pytorch code
(the format of ``stylegan2-ffhq-config-f.pt`` that e4e and HFGI use), so an official ``g_ema``
loads with ``strict=True``. Everything is pure PyTorch (see :mod:`networks.hfgi.upfirdn2d`).

HFGI's modification is built in: ``forward(w, conditions=(scale, shift))`` fuses the
consultation features after the first (upsampling) conv of one block,
``out = out * (1 + scale) + shift``, at latent index ``fusion_layer`` (7 = the 64x64 block).

Latent indices: ``conv1`` uses W+ index 0, ``to_rgb1`` index 1; block ``k`` (resolution
``2**(k+3)``) uses ``2k+1`` (upsampling conv), ``2k+2`` (second conv) and ``2k+3`` (to_rgb).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from networks.hfgi.upfirdn2d import FusedLeakyReLU, fused_leaky_relu, make_kernel, upfirdn2d

__all__ = [
    "StyleGAN2Generator",
    "EqualLinear",
    "EqualConv2d",
    "ScaledLeakyReLU",
    "ModulatedConv2d",
    "generator_channels",
]


def generator_channels(channel_multiplier: int = 2, max_channels: int | None = None) -> dict[int, int]:
    """Feature channels per resolution of the official generator (config-f: multiplier 2).

    ``max_channels`` caps every entry (non-official; tiny CPU configs only).
    """
    table = {
        4: 512,
        8: 512,
        16: 512,
        32: 512,
        64: 256 * channel_multiplier,
        128: 128 * channel_multiplier,
        256: 64 * channel_multiplier,
        512: 32 * channel_multiplier,
        1024: 16 * channel_multiplier,
    }
    if max_channels is not None:
        table = {r: min(c, max_channels) for r, c in table.items()}
    return table


class PixelNorm(nn.Module):
    """Normalise each latent vector to unit root-mean-square over channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate (weights scaled at run time).

    Args:
        in_dim: input features.
        out_dim: output features.
        bias: learn a bias.
        bias_init: initial bias value.
        lr_mul: learning-rate multiplier (the mapping network uses 0.01).
        activation: ``"fused_lrelu"`` for bias + scaled leaky ReLU, None for linear.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: str | None = None,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.zeros(out_dim).fill_(bias_init)) if bias else None
        if activation not in (None, "fused_lrelu"):
            raise ValueError(f"EqualLinear activation must be None or 'fused_lrelu', got {activation!r}")
        self.activation = activation
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias=bias)


class EqualConv2d(nn.Module):
    """Conv2d with equalised learning rate (used by the HFGI consultation encoder heads).

    Args:
        in_channel: input channels.
        out_channel: output channels.
        kernel_size: square kernel size.
        stride: convolution stride.
        padding: zero padding.
        bias: learn a bias.
    """

    def __init__(
        self, in_channel: int, out_channel: int, kernel_size: int, stride: int = 1, padding: int = 0, bias: bool = True
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.stride = stride
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)


class ScaledLeakyReLU(nn.Module):
    """Leaky ReLU multiplied by ``sqrt(2)``.

    Args:
        negative_slope: slope for negative inputs.
    """

    def __init__(self, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.negative_slope) * math.sqrt(2)


class Blur(nn.Module):
    """FIR low-pass filter (buffer ``kernel``), optionally gain-corrected after zero insertion."""

    def __init__(self, kernel: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        k = make_kernel(list(kernel)) * (upsample_factor**2)
        self.register_buffer("kernel", k)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x upsampling with a FIR filter (buffer ``kernel``), used on the RGB skip path."""

    def __init__(self, kernel: Sequence[float], factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        k = make_kernel(list(kernel)) * (factor**2)
        self.register_buffer("kernel", k)
        p = k.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, down=1, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """Style-modulated (and optionally demodulated) convolution; weight ``(1, out, in, k, k)``.

    Args:
        in_channel: input channels.
        out_channel: output channels.
        kernel_size: square kernel size.
        style_dim: latent width (input of the ``modulation`` EqualLinear).
        demodulate: normalise each output filter after modulation.
        upsample: 2x upsampling transposed conv followed by a blur.
        blur_kernel: FIR taps of the blur.
    """

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
    ) -> None:
        super().__init__()
        self.in_channel = in_channel
        self.out_channel = out_channel
        self.kernel_size = kernel_size
        self.upsample = upsample
        self.demodulate = demodulate
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.modulation(style).view(b, 1, c, 1, 1)
        weight = self.scale * self.weight * s  # (B, out, in, k, k)
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4)) + 1e-8)
            weight = weight * demod.view(b, self.out_channel, 1, 1, 1)
        k = self.kernel_size
        x = x.reshape(1, b * c, h, w)
        if self.upsample:
            # transposed conv wants (in, out/groups, k, k) per group
            weight = weight.transpose(1, 2).reshape(b * c, self.out_channel, k, k)
            out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=b)
            out = out.reshape(b, self.out_channel, out.shape[-2], out.shape[-1])
            return self.blur(out)
        weight = weight.reshape(b * self.out_channel, c, k, k)
        out = F.conv2d(x, weight, padding=self.padding, groups=b)
        return out.reshape(b, self.out_channel, out.shape[-2], out.shape[-1])


class NoiseInjection(nn.Module):
    """Adds per-pixel noise scaled by a learned scalar ``weight``."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            noise = x.new_empty(x.shape[0], 1, x.shape[2], x.shape[3]).normal_()
        return x + self.weight * noise


class ConstantInput(nn.Module):
    """The learned 4x4 constant the synthesis network starts from (parameter ``input``)."""

    def __init__(self, channel: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    """Modulated conv -> noise -> bias + scaled leaky ReLU (keys ``conv``, ``noise``, ``activate``)."""

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        style_dim: int,
        upsample: bool = False,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        demodulate: bool = True,
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(
            in_channel, out_channel, kernel_size, style_dim, demodulate=demodulate, upsample=upsample, blur_kernel=blur_kernel
        )
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), noise=noise))


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB (no demodulation) plus the upsampled skip image."""

    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True, blur_kernel: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class StyleGAN2Generator(nn.Module):
    """StyleGAN2 generator with the state-dict layout of rosinality's ``Generator`` (``g_ema``).

    Official FFHQ config-f: ``StyleGAN2Generator(1024, 512, 8, channel_multiplier=2)``; tests use
    e.g. ``StyleGAN2Generator(32, 64, 2, channel_multiplier=1)``.

    Args:
        size: output resolution (power of two, >= 8).
        style_dim: latent width (512 for the official models).
        n_mlp: number of mapping-network layers (8 officially).
        channel_multiplier: width multiplier of the 64..1024 blocks (2 = config-f).
        blur_kernel: FIR taps of the resampling filters.
        lr_mlp: learning-rate multiplier of the mapping network.
        fusion_layer: W+ index of the upsampling conv after which HFGI's consultation features
            are fused (odd, ``1 <= i <= 2*log2(size) - 5``); 7 = the 64x64 block. ``None``
            disables fusion (``conditions`` must then be None).
        max_channels: cap on the feature channels of every block. ``None`` (default) is the
            official layout; a small cap (e.g. 32) gives a fast, NON-checkpoint-compatible
            generator for tests and tiny CPU configs (same key names, smaller shapes).
    """

    def __init__(
        self,
        size: int = 1024,
        style_dim: int = 512,
        n_mlp: int = 8,
        channel_multiplier: int = 2,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        lr_mlp: float = 0.01,
        fusion_layer: int | None = 7,
        max_channels: int | None = None,
    ) -> None:
        super().__init__()
        log_size = int(math.log2(size)) if size > 0 else 0
        if size < 8 or 2**log_size != size or size > 1024:
            raise ValueError(f"StyleGAN2Generator size must be a power of two in [8, 1024], got {size}")
        self.size = size
        self.style_dim = style_dim
        self.log_size = log_size
        self.channel_multiplier = channel_multiplier
        self.num_layers = (log_size - 2) * 2 + 1
        self.n_latent = log_size * 2 - 2
        self.channels = generator_channels(channel_multiplier, max_channels)
        if fusion_layer is not None:
            last = 2 * (log_size - 3) + 1
            if fusion_layer < 1 or fusion_layer > last or fusion_layer % 2 == 0:
                valid = list(range(1, last + 1, 2))
                raise ValueError(
                    f"fusion_layer={fusion_layer} is not an upsampling-conv latent index of a size-{size} "
                    f"generator; valid: {valid} (index 2k+1 fuses at resolution 2**(k+3)) or None"
                )
        self.fusion_layer = fusion_layer

        self.style = nn.Sequential(
            PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu") for _ in range(n_mlp)]
        )
        self.input = ConstantInput(self.channels[4])
        self.conv1 = StyledConv(self.channels[4], self.channels[4], 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(self.channels[4], style_dim, upsample=False)

        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            res = (layer_idx + 5) // 2
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, 2**res, 2**res))
        in_channel = self.channels[4]
        for i in range(3, log_size + 1):
            out_channel = self.channels[2**i]
            self.convs.append(StyledConv(in_channel, out_channel, 3, style_dim, upsample=True, blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_channel, out_channel, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_channel, style_dim))
            in_channel = out_channel

    # ------------------------------------------------------------------ fusion geometry
    @property
    def fusion_resolution(self) -> int | None:
        """Spatial size of the features at ``fusion_layer`` (64 for index 7)."""
        return None if self.fusion_layer is None else 2 ** ((self.fusion_layer - 1) // 2 + 3)

    @property
    def fusion_channels(self) -> int | None:
        """Channels of the features at ``fusion_layer`` (512 for index 7 of config-f)."""
        return None if self.fusion_layer is None else self.channels[self.fusion_resolution]

    # ------------------------------------------------------------------ latents
    def get_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Map z ``(..., style_dim)`` to w with the mapping network."""
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n: int = 4096) -> torch.Tensor:
        """Average w over ``n`` random z, shape ``(1, style_dim)`` (the truncation centre)."""
        z = torch.randn(n, self.style_dim, device=self.input.input.device)
        return self.style(z).mean(0, keepdim=True)

    def make_noise(self) -> list[torch.Tensor]:
        """Fresh random noise maps for every layer (same shapes as the ``noises`` buffers)."""
        return [torch.randn_like(getattr(self.noises, f"noise_{i}")) for i in range(self.num_layers)]

    def _wplus(self, latent: torch.Tensor) -> torch.Tensor:
        if latent.ndim == 2:
            latent = latent.unsqueeze(1).expand(-1, self.n_latent, -1)
        if latent.ndim != 3 or latent.shape[1] != self.n_latent or latent.shape[2] != self.style_dim:
            raise ValueError(
                f"latent must be (B, {self.style_dim}) or W+ (B, {self.n_latent}, {self.style_dim}) for a "
                f"size-{self.size} generator, got {tuple(latent.shape)}"
            )
        return latent

    # ------------------------------------------------------------------ synthesis
    def forward(
        self,
        latent: torch.Tensor,
        conditions: tuple[torch.Tensor, torch.Tensor] | None = None,
        input_is_latent: bool = True,
        noise: Sequence[torch.Tensor | None] | None = None,
        randomize_noise: bool = False,
        truncation: float = 1.0,
        truncation_latent: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Synthesise images in [-1, 1] (not clamped).

        Args:
            latent: W ``(B, style_dim)``, W+ ``(B, n_latent, style_dim)``, or z (same shapes)
                when ``input_is_latent`` is False.
            conditions: HFGI ``(scale, shift)``, each ``(B, fusion_channels, r, r)`` with
                ``r = fusion_resolution``; fused as ``out * (1 + scale) + shift``.
            input_is_latent: False maps ``latent`` through the mapping network first.
            noise: per-layer noise maps (``num_layers`` entries, None = random); overrides
                ``randomize_noise``.
            randomize_noise: True draws fresh noise; False uses the stored ``noises`` buffers.
            truncation: psi; < 1 pulls w towards ``truncation_latent``.
            truncation_latent: ``(1, style_dim)`` truncation centre (e.g. :meth:`mean_latent`).

        Returns:
            ``(B, 3, size, size)`` image.
        """
        if not input_is_latent:
            latent = self.style(latent)
        if truncation < 1:
            if truncation_latent is None:
                raise ValueError("truncation < 1 needs truncation_latent (e.g. generator.mean_latent())")
            latent = truncation_latent + truncation * (latent - truncation_latent)
        latent = self._wplus(latent)
        if noise is None:
            noise = [None] * self.num_layers if randomize_noise else [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        elif len(noise) != self.num_layers:
            raise ValueError(f"noise must have {self.num_layers} entries, got {len(noise)}")
        if conditions is not None:
            self._check_conditions(conditions, latent.shape[0])

        out = self.input(latent.shape[0])
        out = self.conv1(out, latent[:, 0], noise=noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for conv_up, conv, noise_up, noise_2, to_rgb in zip(self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2], self.to_rgbs):
            out = conv_up(out, latent[:, i], noise=noise_up)
            if conditions is not None and i == self.fusion_layer:
                scale, shift = conditions
                out = out * (1 + scale) + shift
            out = conv(out, latent[:, i + 1], noise=noise_2)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip

    def _check_conditions(self, conditions: tuple[torch.Tensor, torch.Tensor], batch: int) -> None:
        if self.fusion_layer is None:
            raise ValueError("conditions were given but this generator has fusion_layer=None")
        if len(conditions) != 2:
            raise ValueError(f"conditions must be a (scale, shift) pair, got {len(conditions)} tensors")
        r, c = self.fusion_resolution, self.fusion_channels
        for name, t in zip(("scale", "shift"), conditions):
            if t.ndim != 4 or t.shape[1] != c or t.shape[2:] != (r, r) or t.shape[0] not in (1, batch):
                raise ValueError(
                    f"condition {name} must be ({batch}, {c}, {r}, {r}) for fusion_layer={self.fusion_layer}, "
                    f"got {tuple(t.shape)}"
                )
