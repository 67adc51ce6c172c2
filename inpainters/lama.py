"""LaMa (FFC-ResNet) background inpainter behind the :class:`inpainters.base.Inpainter` interface."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from inpainters.base import Inpainter
from networks.lama.ffc import BIG_LAMA_CONFIG, FFCResNetGenerator, load_big_lama_generator


def pad_symmetric_to_modulo(x: torch.Tensor, modulo: int) -> torch.Tensor:
    """Pad bottom/right with mirrored edges (numpy ``symmetric``, as LaMa's ``pad_img_to_modulo``)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % modulo, (-w) % modulo
    if ph:
        if ph > h:
            x = F.pad(x, (0, 0, 0, ph), mode="replicate")
        else:
            x = torch.cat([x, x.flip(-2)[..., :ph, :]], dim=-2)
    if pw:
        if pw > w:
            x = F.pad(x, (0, pw, 0, 0), mode="replicate")
        else:
            x = torch.cat([x, x.flip(-1)[..., :pw]], dim=-1)
    return x


class LamaInpainter(Inpainter):
    """LaMa-compatible inpainter (big-lama by default).

    The generator sees LaMa's input ``cat(img01 * (1 - mask), mask)`` with ``img01`` in [0, 1],
    padded (symmetric, bottom/right) to a multiple of ``pad_to_modulo``; its [0, 1] output is
    cropped back, mapped to [-1, 1] and composited so known pixels stay exact.

    Args:
        checkpoint: big-lama Lightning checkpoint (``best.ckpt``, ``generator.*`` keys). ``None``
            keeps the random initialisation (tests, tiny configs).
        generator: constructor arguments of :class:`networks.lama.ffc.FFCResNetGenerator`;
            ``None`` = big-lama's (:data:`networks.lama.ffc.BIG_LAMA_CONFIG`).
        pad_to_modulo: pad H and W to a multiple of this (LaMa's predict config: 8; must be a
            multiple of ``2 ** n_downsampling``).
    """

    def __init__(self, checkpoint: str | None = None, generator: dict[str, Any] | None = None,
                 pad_to_modulo: int = 8) -> None:
        super().__init__()
        cfg = dict(BIG_LAMA_CONFIG if generator is None else generator)
        self.generator = FFCResNetGenerator(**cfg)
        if pad_to_modulo % self.generator.downscale:
            raise ValueError(f"LamaInpainter: pad_to_modulo={pad_to_modulo} must be a multiple of "
                             f"2 ** n_downsampling = {self.generator.downscale}")
        self.pad_to_modulo = pad_to_modulo
        self.checkpoint = checkpoint
        if checkpoint is not None:
            load_big_lama_generator(self.generator, Path(checkpoint))
        self.generator.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "LamaInpainter":
        """The generator always runs in eval mode (BatchNorm running statistics)."""
        super().train(mode)
        self.generator.eval()
        return self

    def predict(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        img01 = (image + 1) / 2
        x = torch.cat([img01 * (1 - mask), mask], dim=1)
        x = pad_symmetric_to_modulo(x, self.pad_to_modulo)
        out01 = self.generator(x)[..., :h, :w]
        return out01 * 2 - 1
