"""HFGI's consultation encoder E_c (official ``ResidualEncoder``; checkpoint prefix ``residue.``).

Key names and shapes equal the official HFGI code (Tengfei-Wang/HFGI).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from networks.hfgi.ir_se import ir_stage, ir_stem
from networks.hfgi.stylegan2 import EqualConv2d, ScaledLeakyReLU

__all__ = ["ConsultationEncoder"]


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
        self.conv_layer1 = ir_stem(3, 32)
        self.conv_layer2 = ir_stage(32, 48, 2)
        self.conv_layer3 = ir_stage(48, 64, 2)
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
