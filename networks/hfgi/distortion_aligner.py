"""HFGI's adaptive distortion alignment module ADA (official ``ResidualAligner``; checkpoint prefix
``grid_align.``). Key names and shapes equal the official HFGI code (Tengfei-Wang/HFGI).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from networks.hfgi.ir_se import ir_stage, ir_stem

__all__ = ["DistortionAligner"]


class DistortionAligner(nn.Module):
    """HFGI adaptive distortion alignment module, ADA (official class ``ResidualAligner``).

    Input: ``cat(distortion map, low-fidelity (edited) image)`` ``(B, 6, R, R)``; output: the
    distortion map aligned to that image ``(B, 3, R, R)``. U-shaped: stem 6->16, IR stages
    16->32->48->64 (stride 2 each), then decoder stages on the upsampled features concatenated
    with the skips: (64+48)->64->32, (32+32)->32->16, (16+16)->16->3. R must be divisible by 8.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv_layer1 = ir_stem(6, 16)
        self.conv_layer2 = ir_stage(16, 32, 2)
        self.conv_layer3 = ir_stage(32, 48, 2)
        self.conv_layer4 = ir_stage(48, 64, 2)
        self.dconv_layer1 = ir_stage(112, 32, 1, mid_ch=64)
        self.dconv_layer2 = ir_stage(64, 16, 1, mid_ch=32)
        self.dconv_layer3 = ir_stage(32, 3, 1, mid_ch=16)

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
