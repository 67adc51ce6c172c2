"""The Python API: load any inpainter by name or checkpoint, inpaint PIL images or numpy arrays.

    from inpainters.api import inpaint, load_inpainter

    model = load_inpainter("demo")                 # the bundled C2F demo model (.safetensors)
    result = inpaint(model, "photo.png", "mask.png")  # PIL image; white mask pixels (>= 128) are holes
    result.save("filled.png")

``load_inpainter`` takes a name (``telea``, ``harmonic``, ``mean``, ``demo``) or the path of a C2F
checkpoint (a training ``last.ckpt``, a standalone ``.ckpt`` or a ``.safetensors`` export) plus the
options of :class:`inpainters.c2f.C2FInpainter` (``strategy``, ``steps``, ``seed``, ``feather``, ...).
The weight-free baselines run under a ``strategy`` too (:class:`inpainters.strategies.StrategyInpainter`).
``inpaint`` accepts PIL images, numpy arrays (``(H, W, 3)`` uint8 or float in [0, 1]; masks ``(H, W)``
bool, uint8 (>= 128 = hole) or float (> 0.5 = hole)) or file paths, and returns a PIL RGB image whose
known pixels are the input's 8-bit values exactly (with ``mask_dilation`` / ``feather``: every pixel
outside the grown hole, :meth:`Inpainter.output_region`). ``python -m main predict``
(:class:`lightning_modules.inpainting_predictor.InpaintingPredictor`) runs :func:`inpaint_tensor`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image

from inpainters.base import Inpainter
from safe_io.image_decoding import decode_image, decode_mask

__all__ = ["DEMO_MODEL", "NAMES", "inpaint", "inpaint_tensor", "load_inpainter"]

#: the bundled demo model in safetensors form (``python -m inpainters.export assets/c2f_synthetic_demo.ckpt ...``)
DEMO_MODEL = Path(__file__).resolve().parents[1] / "assets" / "c2f_synthetic_demo.safetensors"
#: names ``load_inpainter`` knows besides checkpoint paths
NAMES = ("telea", "harmonic", "mean", "demo")
HOLE_THRESHOLD = 128

ImageLike = Union[Image.Image, np.ndarray, str, Path]


def load_inpainter(spec: str | Path | Inpainter, **options: Any) -> Inpainter:
    """An inpainter from a name (:data:`NAMES`) or a C2F checkpoint path, in eval mode.

    Args:
        spec: ``"telea"``, ``"harmonic"``, ``"mean"``, ``"demo"`` (the bundled C2F model), a path to a
            C2F ``.ckpt`` / ``.safetensors`` file, or an :class:`Inpainter` (returned as it is).
        options: C2F: any :class:`inpainters.c2f.C2FInpainter` argument (``strategy``, ``steps``,
            ``gains``, ``seed``, ``mask_dilation``, ``feather``, ``color_match``, ...). Baselines:
            ``strategy`` / ``size`` / ``crop_margin`` / ``resize_limit`` (:class:`StrategyInpainter`)
            and Telea's ``radius``.

    Raises:
        ValueError: an unknown name (the message lists the names), or a file that is not a checkpoint.
        networks.checkpoints.CheckpointError: a missing or unreadable checkpoint (named).
    """
    if isinstance(spec, Inpainter):
        if options:
            raise ValueError(f"load_inpainter: options {sorted(options)} only apply when loading by name or path")
        return spec.eval()
    name = str(spec)
    if name.lower() in ("telea", "harmonic", "mean"):
        from inpainters.classical import HarmonicInpainter, MeanFillInpainter, TeleaInpainter
        from inpainters.strategies import StrategyInpainter

        strategy = {k: options.pop(k) for k in ("strategy", "size", "crop_margin", "resize_limit") if k in options}
        cls = {"telea": TeleaInpainter, "harmonic": HarmonicInpainter, "mean": MeanFillInpainter}[name.lower()]
        try:
            base = cls(**options)
        except TypeError as err:
            raise ValueError(f"load_inpainter({name!r}): {err}") from None
        return (StrategyInpainter(base, **strategy) if strategy else base).eval()
    from inpainters.c2f import C2FInpainter

    if name.lower() == "demo":
        path = DEMO_MODEL
    else:
        path = Path(name)
        if not path.exists() and path.suffix not in (".ckpt", ".safetensors", ".pt", ".pth"):
            raise ValueError(
                f"load_inpainter: {name!r} is neither a known name ({', '.join(NAMES)}) nor an existing checkpoint file"
            )
    return C2FInpainter(str(path), **options).eval()


def inpaint_tensor(inpainter: Inpainter, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``inpainter(image, mask)`` in eval mode under ``torch.inference_mode`` (no autograd bookkeeping).

    ``image`` ``(B, 3, H, W)`` in [-1, 1], ``mask`` ``(B, 1, H, W)`` (1 = hole); known pixels exact.
    """
    if inpainter.training:
        inpainter.eval()
    with torch.inference_mode():
        return inpainter(image, mask)


def _rgb_array(image: ImageLike) -> np.ndarray:
    if isinstance(image, (str, Path)):  # the project's decoder: upright, true bit depth, errors naming the file
        return decode_image(image)
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"inpaint: image array must be (H, W, 3) RGB, got shape {arr.shape}")
    arr = arr[..., :3]
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        if arr.min() < 0 or arr.max() > 1:
            raise ValueError(f"inpaint: a float image must be in [0, 1], got values in [{arr.min():.3g}, {arr.max():.3g}]")
        return np.rint(arr * 255).astype(np.uint8)
    raise ValueError(f"inpaint: image array must be uint8 or float in [0, 1], got dtype {arr.dtype}")


def _hole_array(mask: ImageLike) -> np.ndarray:
    if isinstance(mask, (str, Path)):
        return decode_mask(mask, f"mask {mask}") >= HOLE_THRESHOLD
    if isinstance(mask, Image.Image):
        return np.asarray(mask.convert("L")) >= HOLE_THRESHOLD
    arr = np.asarray(mask)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"inpaint: mask array must be (H, W), got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if arr.dtype == np.uint8:
        return arr >= HOLE_THRESHOLD
    if np.issubdtype(arr.dtype, np.floating):
        return arr > 0.5
    raise ValueError(f"inpaint: mask array must be bool, uint8 (>= 128 = hole) or float (> 0.5 = hole), got {arr.dtype}")


def inpaint(inpainter: Inpainter | str | Path, image: ImageLike, mask: ImageLike, **options: Any) -> Image.Image:
    """Fill the holes of one image; returns a PIL RGB image whose known pixels equal the input's exactly.

    Args:
        inpainter: an :class:`Inpainter` or anything :func:`load_inpainter` takes (then ``options`` go there).
        image: PIL image, numpy array (``(H, W, 3)`` uint8, or float in [0, 1]) or file path.
        mask: same size; PIL / file (grey >= 128 = hole) or array (bool, uint8 >= 128, float > 0.5).
    """
    model = inpainter if isinstance(inpainter, Inpainter) and not options else load_inpainter(inpainter, **options)
    rgb, hole = _rgb_array(image), _hole_array(mask)
    if hole.shape != rgb.shape[:2]:
        raise ValueError(f"inpaint: mask is {hole.shape[1]}x{hole.shape[0]} but the image is "
                         f"{rgb.shape[1]}x{rgb.shape[0]} (WxH); they must have the same size")
    u8 = torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).permute(2, 0, 1)[None]
    m = torch.from_numpy(hole.astype(np.float32))[None, None]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    out = inpaint_tensor(model, (u8.float() / 127.5 - 1).to(device), m.to(device)).cpu()
    out_u8 = ((out.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    region = model.output_region(m) > 0.5  # the hole (grown by the paste-back options, if any)
    out_u8 = torch.where(region, out_u8, u8)  # every other pixel: the input bytes, not a float round trip
    return Image.fromarray(out_u8[0].permute(1, 2, 0).numpy(), mode="RGB")
