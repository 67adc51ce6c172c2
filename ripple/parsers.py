"""Human parsers: a person mask (and a label map) for each image of a batch.

Interface: :class:`HumanParser` (``parse(image, keys) -> HumanParse``). Implementations:
:class:`GraphonomyParser` (runs the Graphonomy-compatible network) and :class:`MaskFolderParser`
(reads precomputed masks or label maps from a folder, for users who already have them).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from networks.parsing.graphonomy import CIHP_CLASSES, GraphonomyConfig, GraphonomyNet, load_graphonomy_checkpoint, parse_logits
from safe_io import output_path


@dataclass
class HumanParse:
    """Result of parsing a batch.

    Attributes:
        labels: ``(B,H,W)`` long label map (CIHP ids for Graphonomy; 0 = background).
        person: ``(B,1,H,W)`` float {0,1}, 1 = person.
    """

    labels: torch.Tensor
    person: torch.Tensor


class HumanParser(nn.Module):
    """Base class of human parsers. Subclasses implement :meth:`parse`.

    ``image`` is ``(B,3,H,W)`` RGB in [-1, 1]; ``keys`` are the sample keys (needed by file-based
    parsers, ignored by networks). Parsers run without gradients.
    """

    def parse(self, image: torch.Tensor, keys: Sequence[str] | None = None) -> HumanParse:
        """Label map and person mask of ``image``."""
        raise NotImplementedError

    def person_mask(self, image: torch.Tensor, keys: Sequence[str] | None = None) -> torch.Tensor:
        """``(B,1,H,W)`` float {0,1} person mask."""
        return self.parse(image, keys).person


def _person_from_labels(labels: torch.Tensor, person_classes: Sequence[int] | None) -> torch.Tensor:
    if person_classes is None:
        person = labels != 0
    else:
        person = torch.isin(labels, torch.as_tensor(list(person_classes), device=labels.device))
    return person[:, None].float()


class GraphonomyParser(HumanParser):
    """Graphonomy-compatible CIHP parser (20 classes, 0 = background).

    Args:
        checkpoint: the released CIHP ``inference.pth``; ``None`` keeps a random initialisation
            (tests and tiny configs only: its masks are meaningless).
        config: :class:`networks.parsing.graphonomy.GraphonomyConfig` fields; ``None`` = the official model.
        scales: test-time scales (official multi-scale test: ``[1, 0.5, 0.75, 1.25, 1.5, 1.75]``).
        flip: also parse the mirrored image (left/right classes swapped back), as the official test.
        person_classes: CIHP ids that count as person; ``None`` = every non-background class.
    """

    def __init__(self, checkpoint: str | None = None, config: dict[str, Any] | None = None,
                 scales: list[float] = [1.0], flip: bool = True, person_classes: list[int] | None = None) -> None:
        super().__init__()
        cfg = GraphonomyConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in (config or {}).items()})
        self.net = GraphonomyNet(cfg)
        if checkpoint is not None:
            load_graphonomy_checkpoint(self.net, checkpoint)
        self.net.eval().requires_grad_(False)
        if not scales or any(s <= 0 for s in scales):
            raise ValueError(f"GraphonomyParser: scales must be positive, got {scales}")
        if person_classes is not None and any(not 0 < c < len(CIHP_CLASSES) for c in person_classes):
            raise ValueError(f"GraphonomyParser: person_classes must be CIHP ids 1..19, got {person_classes}")
        self.scales = list(scales)
        self.flip = flip
        self.person_classes = person_classes

    def train(self, mode: bool = True) -> "GraphonomyParser":
        """The network always stays in eval mode."""
        super().train(mode)
        self.net.eval()
        return self

    @torch.no_grad()
    def parse(self, image: torch.Tensor, keys: Sequence[str] | None = None) -> HumanParse:
        labels = parse_logits(self.net, image, self.scales, self.flip).argmax(1)
        return HumanParse(labels=labels, person=_person_from_labels(labels, self.person_classes))


class MaskFolderParser(HumanParser):
    """Reads precomputed person masks or CIHP label maps: ``<root>/<key><suffix>``.

    With ``kind="mask"`` a file is an 8-bit image (converted to luminance), person = value >= 128,
    and the label map is the 0/1 mask. With ``kind="labels"`` it holds class ids (8-bit gray or
    palette PNG; palette indices are the ids) and person = any of ``person_classes`` (default
    every non-zero id).
    Files of another size are resized to the image with nearest-neighbour sampling.

    The ripple evaluator asks for the original as ``<key>`` and for an edit as
    ``<key>.<direction><degree>`` (e.g. ``000123.pose3``), see ``docs/ripple.md``.

    Args:
        root: folder of the files.
        kind: ``"mask"`` (binary person masks) or ``"labels"`` (label maps).
        suffix: file name ending after the key.
        person_classes: label ids that count as person (``kind="labels"`` only).
    """

    def __init__(self, root: str, kind: str = "mask", suffix: str = ".png",
                 person_classes: list[int] | None = None) -> None:
        super().__init__()
        if kind not in ("mask", "labels"):
            raise ValueError(f"MaskFolderParser: kind must be 'mask' or 'labels', got {kind!r}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"MaskFolderParser: mask folder {self.root} does not exist; write the person "
                                    "masks there as <key><suffix> or fix the parser's root")
        self.kind = kind
        self.suffix = suffix
        self.person_classes = person_classes

    def path_for(self, key: str) -> Path:
        """File that holds the mask of sample ``key``."""
        return output_path(self.root, key, self.suffix, "the batch's keys")

    def _read(self, path: Path) -> np.ndarray:
        img = Image.open(path)
        if self.kind == "mask":
            return np.asarray(img.convert("L"))
        if img.mode in ("P", "L", "I", "I;16"):  # class ids: palette indices or gray values, never colours
            return np.asarray(img)
        raise ValueError(f"MaskFolderParser: label map {path} is a {img.mode} image; label maps must hold class ids "
                         "(8-bit gray or palette PNG, e.g. Graphonomy's *_gray.png), not colour visualisations")

    @torch.no_grad()
    def parse(self, image: torch.Tensor, keys: Sequence[str] | None = None) -> HumanParse:
        if keys is None or len(keys) != image.shape[0]:
            raise ValueError(f"MaskFolderParser needs one key per image (got {None if keys is None else len(keys)} "
                             f"keys for a batch of {image.shape[0]})")
        h, w = image.shape[-2:]
        maps = []
        for key in keys:
            path = self.path_for(key)
            if not path.is_file():
                raise FileNotFoundError(f"MaskFolderParser: no mask for key {key!r}: {path} is missing")
            arr = self._read(path)
            t = torch.from_numpy(arr.astype(np.int64))[None, None].float()
            if t.shape[-2:] != (h, w):
                t = F.interpolate(t, size=(h, w), mode="nearest")
            maps.append(t[0, 0].long())
        raw = torch.stack(maps).to(image.device)
        if self.kind == "mask":
            labels = (raw >= 128).long()
            person = labels[:, None].float()
        else:
            labels = raw
            person = _person_from_labels(labels, self.person_classes)
        return HumanParse(labels=labels, person=person)


def save_person_mask(mask: torch.Tensor, path: str | Path) -> None:
    """Write a ``(1,H,W)`` or ``(H,W)`` {0,1} mask as an 8-bit PNG (0 / 255) readable by :class:`MaskFolderParser`."""
    arr = (mask.detach().reshape(mask.shape[-2:]).cpu().numpy() > 0.5).astype(np.uint8) * 255
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode="L").save(path)
