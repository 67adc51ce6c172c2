"""ArcFace IR-SE50 face-recognition backbone and the identity loss used by pSp / e4e / HFGI.

The backbone's keys match ``model_ir_se50.pth`` (TreB1eN InsightFace ``Backbone(112, 50,
'ir_se')``): ``input_layer.*``, ``body.{0..23}.*``, ``output_layer.{0,3,4}.*``.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from networks.hfgi.ir_se import make_ir_body

__all__ = ["ArcFaceBackbone", "IdentityLoss"]


class ArcFaceBackbone(nn.Module):
    """IR-SE ArcFace embedding network for 112x112 faces; returns L2-normalised 512-d embeddings.

    Args:
        num_layers: IR depth (50 for ``model_ir_se50.pth``).
        mode: ``"ir_se"`` or ``"ir"``.
        drop_ratio: dropout before the embedding layer (inactive in eval mode).
    """

    def __init__(self, num_layers: int = 50, mode: str = "ir_se", drop_ratio: float = 0.6) -> None:
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, (3, 3), 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        self.body = make_ir_body(num_layers, mode)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512), nn.Dropout(drop_ratio), nn.Flatten(), nn.Linear(512 * 7 * 7, 512), nn.BatchNorm1d(512)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(B, 512)`` of faces ``(B, 3, 112, 112)`` in [-1, 1]."""
        if x.shape[-2:] != (112, 112):
            raise ValueError(f"ArcFaceBackbone expects 112x112 faces, got {tuple(x.shape[-2:])}")
        return F.normalize(self.output_layer(self.body(self.input_layer(x))), dim=1)


class IdentityLoss(nn.Module):
    """``1 - cos(ArcFace(crop(y_hat)), ArcFace(crop(y)))`` per sample (pSp/e4e/HFGI ``IDLoss``).

    Faces are cropped to the official box (rows 35:223, cols 32:220 of a 256 image; scaled for
    other sizes) and pooled to 112x112. The backbone is frozen and kept in eval mode.

    Args:
        checkpoint: path of ``model_ir_se50.pth``; required (raises FileNotFoundError naming
            where to put it when absent).
    """

    def __init__(self, checkpoint: str | os.PathLike) -> None:
        super().__init__()
        from networks.hfgi.official_checkpoints import load_arcface

        self.backbone = ArcFaceBackbone()
        load_arcface(checkpoint, self.backbone)
        self.backbone.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "IdentityLoss":
        super().train(mode)
        self.backbone.eval()
        return self

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """ArcFace embeddings of images ``(B, 3, H, W)`` in [-1, 1] (cropped and pooled)."""
        h, w = x.shape[-2:]
        top, bottom = round(35 * h / 256), round(223 * h / 256)
        left, right = round(32 * w / 256), round(220 * w / 256)
        face = F.adaptive_avg_pool2d(x[:, :, top:bottom, left:right], (112, 112))
        return self.backbone(face)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample identity loss ``(B,)``."""
        with torch.no_grad():
            target = self.embed(y)
        return 1 - (self.embed(y_hat) * target).sum(dim=1)
