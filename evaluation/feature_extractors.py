"""Feature extractors for FID, as modules torchmetrics' ``FrechetInceptionDistance(feature=...)`` accepts.

Every extractor subclasses :class:`FeatureExtractor`: it takes ``uint8`` images ``(N, 3, H, W)``
(8-bit RGB, what FID is defined on), returns ``(N, num_features)`` float features, has an ``int``
``num_features`` attribute and always stays in eval mode. The evaluators type their
``fid_features`` option with this base, so ``--model.help`` lists exactly these classes.

- :class:`InceptionFeatures`: the standard FID network (torch-fidelity's InceptionV3 port of
  the TF FID graph), weights read offline via :mod:`evaluation.weights`.
- :class:`RandomConvFeatures`: a small fixed-seed random conv net for tests and tiny CI
  configs. Its FID behaves like a distance (0 for identical sets, grows with a shift) but
  the values are not comparable to published FID.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from evaluation.weights import inception_feature_extractor

__all__ = ["FeatureExtractor", "InceptionFeatures", "RandomConvFeatures"]


class FeatureExtractor(nn.Module):
    """Base of FID feature extractors: uint8 ``(N,3,H,W)`` -> ``(N, num_features)`` features, always in eval mode."""

    num_features: int

    def train(self, mode: bool = True) -> "FeatureExtractor":
        """Always stays in eval mode (a metric network)."""
        return super().train(False)

    def forward(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """``(N,3,H,W)`` uint8 -> ``(N, num_features)`` features."""
        raise NotImplementedError


class InceptionFeatures(FeatureExtractor):
    """Standard FID InceptionV3 features, loaded from a local weights file (never downloaded).

    Args:
        feature: Inception layer: 2048 (pool3, the standard FID), 768, 192 or 64.
        weights_dir: directory holding ``weights-inception-2015-12-05-6726825d.pth``;
            ``None`` means ``$TORCH_HOME/hub/checkpoints``.
    """

    def __init__(self, feature: int = 2048, weights_dir: str | None = None) -> None:
        super().__init__()
        self.net = inception_feature_extractor(feature, weights_dir)
        self.num_features = int(feature)

    def forward(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """``(N,3,H,W)`` uint8 -> ``(N, num_features)`` features (resized to 299 inside)."""
        return self.net(images_uint8)


class RandomConvFeatures(FeatureExtractor):
    """A small, deterministic, randomly initialised conv feature extractor for FID in tests / CI.

    Images are resized to ``input_size``, mapped to [-1, 1] and passed through three stride-2
    3x3 convolutions with ReLU; the features are the global average and the global standard
    deviation of the last map (so both colour and texture shifts move the statistics).
    The weights depend only on ``seed``: every process and every run agree.

    Args:
        num_features: feature dimension (even; half means, half standard deviations).
        input_size: side the images are resized to before the convolutions.
        width: channels of the first convolution (doubled by the second).
        seed: seed of the random weights.
    """

    def __init__(self, num_features: int = 32, input_size: int = 64, width: int = 16, seed: int = 0) -> None:
        super().__init__()
        if num_features < 2 or num_features % 2:
            raise ValueError(f"RandomConvFeatures: num_features must be an even number >= 2, got {num_features}")
        self.num_features = int(num_features)
        self.input_size = int(input_size)
        self.convs = nn.ModuleList(
            [
                nn.Conv2d(3, width, 3, stride=2, padding=1),
                nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
                nn.Conv2d(2 * width, num_features // 2, 3, stride=2, padding=1),
            ]
        )
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for conv in self.convs:
                fan_in = conv.in_channels * 9
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
                conv.bias.zero_()
        self.requires_grad_(False)
        self.eval()

    def forward(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """``(N,3,H,W)`` uint8 -> ``(N, num_features)`` float32 features."""
        if images_uint8.dtype != torch.uint8 or images_uint8.ndim != 4 or images_uint8.shape[1] != 3:
            raise ValueError(
                "RandomConvFeatures expects uint8 images (N,3,H,W), got "
                f"{images_uint8.dtype} {tuple(images_uint8.shape)}"
            )
        x = images_uint8.float() / 127.5 - 1.0
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", antialias=True,
                              align_corners=False)
        for conv in self.convs:
            x = F.relu(conv(x))
        flat = x.flatten(2)
        return torch.cat([flat.mean(-1), flat.std(-1, unbiased=False)], dim=1)
