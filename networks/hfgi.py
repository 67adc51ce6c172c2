"""HFGI's two trainable networks: the consultation encoder and ADA (distortion aligner).

Key names and shapes equal the official HFGI code (Tengfei-Wang/HFGI, ``ResidualEncoder`` and
``ResidualAligner``); in the HFGI checkpoint they sit under ``residue.`` and ``grid_align.``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from networks.ir_se import BottleneckIR
from networks.stylegan2 import EqualConv2d, ScaledLeakyReLU

__all__ = ["ConsultationEncoder", "DistortionAligner"]


def _stem(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, (3, 3), 1, 1, bias=False), nn.BatchNorm2d(out_ch), nn.PReLU(out_ch))


def _ir_stage(in_ch: int, out_ch: int, stride: int, mid_ch: int | None = None) -> nn.Sequential:
    """Three IR units: in -> mid (strided) -> out -> out (mid defaults to out)."""
    mid = out_ch if mid_ch is None else mid_ch
    return nn.Sequential(BottleneckIR(in_ch, mid, stride), BottleneckIR(mid, out_ch, 1), BottleneckIR(out_ch, out_ch, 1))


class ConsultationEncoder(nn.Module):
    """HFGI consultation encoder E_c (official class ``ResidualEncoder``).

    Maps the (aligned) distortion map ``(B, 3, R, R)`` to the ``(scale, shift)`` pair fused into
    the generator: ``3 -> 32`` stem, IR stages ``32 -> 48`` and ``48 -> 64`` (each stride 2),
    then two heads ``EqualConv 64->C -> ScaledLeakyReLU -> EqualConv C->C``, resized bilinearly
    to ``out_size`` (official: R = 256, C = 512, out_size = 64).

    Args:
        out_channels: channels of scale/shift = generator channels at the fusion layer (512
            officially; other values are not checkpoint-compatible).
        out_size: spatial size of scale/shift = generator resolution at the fusion layer.
    """

    def __init__(self, out_channels: int = 512, out_size: int = 64) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.out_size = out_size
        self.conv_layer1 = _stem(3, 32)
        self.conv_layer2 = _ir_stage(32, 48, 2)
        self.conv_layer3 = _ir_stage(48, 64, 2)
        self.condition_scale3 = self._head(64, out_channels)
        self.condition_shift3 = self._head(64, out_channels)

    @staticmethod
    def _head(in_ch: int, out_ch: int) -> nn.Sequential:
        return nn.Sequential(
            EqualConv2d(in_ch, out_ch, 3, stride=1, padding=1, bias=True),
            ScaledLeakyReLU(0.2),
            EqualConv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=True),
        )

    def forward(self, distortion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, shift)``, each ``(B, out_channels, out_size, out_size)``."""
        if distortion.ndim != 4 or distortion.shape[1] != 3:
            raise ValueError(f"ConsultationEncoder expects a (B, 3, H, W) distortion map, got {tuple(distortion.shape)}")
        feat = self.conv_layer3(self.conv_layer2(self.conv_layer1(distortion)))
        size = (self.out_size, self.out_size)
        scale = F.interpolate(self.condition_scale3(feat), size=size, mode="bilinear")
        shift = F.interpolate(self.condition_shift3(feat), size=size, mode="bilinear")
        return scale, shift


class DistortionAligner(nn.Module):
    """HFGI adaptive distortion alignment module, ADA (official class ``ResidualAligner``).

    Input: ``cat(distortion map, low-fidelity (edited) image)`` ``(B, 6, R, R)``; output: the
    distortion map aligned to that image ``(B, 3, R, R)``. U-shaped: stem 6->16, IR stages
    16->32->48->64 (stride 2 each), then decoder stages on the upsampled features concatenated
    with the skips: (64+48)->64->32, (32+32)->32->16, (16+16)->16->3. R must be divisible by 8.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv_layer1 = _stem(6, 16)
        self.conv_layer2 = _ir_stage(16, 32, 2)
        self.conv_layer3 = _ir_stage(32, 48, 2)
        self.conv_layer4 = _ir_stage(48, 64, 2)
        self.dconv_layer1 = _ir_stage(112, 32, 1, mid_ch=64)
        self.dconv_layer2 = _ir_stage(64, 16, 1, mid_ch=32)
        self.dconv_layer3 = _ir_stage(32, 3, 1, mid_ch=16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Aligned distortion map ``(B, 3, H, W)`` for input ``(B, 6, H, W)``."""
        if x.ndim != 4 or x.shape[1] != 6:
            raise ValueError(
                f"DistortionAligner expects cat(distortion, image) with 6 channels, got {tuple(x.shape)}"
            )
        if x.shape[-1] % 8 or x.shape[-2] % 8:
            raise ValueError(f"DistortionAligner input size must be divisible by 8, got {tuple(x.shape[-2:])}")
        feat1 = self.conv_layer1(x)
        feat2 = self.conv_layer2(feat1)
        feat3 = self.conv_layer3(feat2)
        feat4 = self.conv_layer4(feat3)
        up = F.interpolate(feat4, size=feat3.shape[-2:], mode="bilinear")
        d1 = self.dconv_layer1(torch.cat((up, feat3), 1))
        up = F.interpolate(d1, size=feat2.shape[-2:], mode="bilinear")
        d2 = self.dconv_layer2(torch.cat((up, feat2), 1))
        up = F.interpolate(d2, size=feat1.shape[-2:], mode="bilinear")
        return self.dconv_layer3(torch.cat((up, feat1), 1))
