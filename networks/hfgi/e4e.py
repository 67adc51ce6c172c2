"""e4e encoder (official ``Encoder4Editing``): IR-SE50 + feature pyramid -> W+ codes.

State-dict keys follow the official e4e code (omertov/encoder4editing, also vendored by HFGI):
``input_layer.*``, ``body.{0..23}.*``, ``styles.{i}.convs.*``, ``styles.{i}.linear.*``,
``latlayer1.*``, ``latlayer2.*``. In ``e4e_ffhq_encode.pt`` they sit under ``encoder.``.

The encoder predicts ``w0`` from the coarse features and per-layer deltas from the pyramid;
``forward`` returns ``w0 + deltas`` WITHOUT ``latent_avg`` (the caller adds it, as pSp does with
``start_from_latent_avg``); :meth:`Encoder4Editing.encode` adds a given ``latent_avg``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from networks.hfgi.ir_se import ir_se_stages, make_ir_body
from networks.hfgi.stylegan2 import EqualLinear

__all__ = ["GradualStyleBlock", "Encoder4Editing", "e4e_style_count"]


def e4e_style_count(stylegan_size: int) -> int:
    """Number of W+ codes e4e predicts for a generator of this resolution (18 for 1024)."""
    return 2 * int(math.log2(stylegan_size)) - 2


class GradualStyleBlock(nn.Module):
    """Strided 3x3 convs down to 1x1, then an EqualLinear: one style vector per block.

    Args:
        in_c: input channels.
        out_c: output width (the style dimension).
        spatial: nominal input size; ``log2(spatial)`` stride-2 convs are stacked.
    """

    def __init__(self, in_c: int, out_c: int, spatial: int) -> None:
        super().__init__()
        self.out_c = out_c
        num_pools = int(math.log2(spatial))
        layers: list[nn.Module] = [nn.Conv2d(in_c, out_c, kernel_size=3, stride=2, padding=1), nn.LeakyReLU()]
        for _ in range(num_pools - 1):
            layers += [nn.Conv2d(out_c, out_c, kernel_size=3, stride=2, padding=1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_c, out_c, lr_mul=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)
        if x.shape[-2:] != (1, 1):
            raise ValueError(
                f"GradualStyleBlock reduced its input to {tuple(x.shape[-2:])} instead of 1x1; the encoder input "
                "is larger than this block supports (e4e expects 256x256 images)"
            )
        return self.linear(x.flatten(1))


def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


class Encoder4Editing(nn.Module):
    """e4e encoder (official class ``Encoder4Editing``; IR-SE50 backbone in ``e4e_ffhq_encode.pt``).

    Input: images ``(B, 3, H, W)`` in [-1, 1], 256x256 for the official model (any size from
    32 up to 256 runs; the pyramid adapts). Output: W+ offsets ``(B, n_styles, style_dim)``.

    Args:
        stylegan_size: resolution of the generator it inverts; ``n_styles = 2*log2(size) - 2``.
        num_layers: IR backbone depth (50 officially; 100/152 as in the official code).
        mode: ``"ir_se"`` (official checkpoints) or ``"ir"``.
        style_dim: width of the predicted codes. The official model uses 512; a smaller value
            (tests, tiny configs) only narrows the style blocks and is not checkpoint-compatible.
    """

    coarse_ind = 3
    middle_ind = 7

    def __init__(self, stylegan_size: int = 1024, num_layers: int = 50, mode: str = "ir_se", style_dim: int = 512) -> None:
        super().__init__()
        self.stylegan_size = stylegan_size
        self.style_dim = style_dim
        self.style_count = e4e_style_count(stylegan_size)
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, (3, 3), 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        self.body = make_ir_body(num_layers, mode)
        # features taken at the end of stages 2, 3 and 4 (units 6, 20, 23 for IR-50, as officially)
        ends = []
        n = 0
        for stage in ir_se_stages(num_layers):
            n += len(stage)
            ends.append(n - 1)
        self._taps = tuple(ends[1:])
        self.styles = nn.ModuleList()
        for i in range(self.style_count):
            spatial = 16 if i < self.coarse_ind else 32 if i < self.middle_ind else 64
            self.styles.append(GradualStyleBlock(512, style_dim, spatial))
        self.latlayer1 = nn.Conv2d(256, 512, kernel_size=1, stride=1, padding=0)
        self.latlayer2 = nn.Conv2d(128, 512, kernel_size=1, stride=1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """W+ codes relative to ``latent_avg``: ``(B, n_styles, style_dim)``."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"Encoder4Editing expects (B, 3, H, W) images, got {tuple(x.shape)}")
        x = self.input_layer(x)
        c1 = c2 = c3 = None
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i == self._taps[0]:
                c1 = x
            elif i == self._taps[1]:
                c2 = x
            elif i == self._taps[2]:
                c3 = x
        w0 = self.styles[0](c3)
        codes = [w0]
        features = c3
        p2 = None
        for i in range(1, self.style_count):
            if i == self.coarse_ind:
                p2 = _upsample_add(c3, self.latlayer1(c2))
                features = p2
            elif i == self.middle_ind:
                features = _upsample_add(p2, self.latlayer2(c1))
            codes.append(w0 + self.styles[i](features))
        return torch.stack(codes, dim=1)

    def encode(self, x: torch.Tensor, latent_avg: torch.Tensor | None = None) -> torch.Tensor:
        """W+ codes with ``latent_avg`` (``(style_dim,)`` or ``(n_styles, style_dim)``) added."""
        w = self(x)
        return w if latent_avg is None else w + latent_avg.to(w)
