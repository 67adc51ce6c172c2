"""The one image decoder of the project: file path or bytes -> 8-bit RGB image (or 8-bit grey mask).

Every reader of images (training shards, the shard writer and ``inspect --check``, predict inputs,
evaluation sets) decodes through :func:`read_image`, so a file means the same pixels everywhere:

1. **EXIF orientation first.** A JPEG shot in portrait with orientation tag 6 or 8 is turned upright
   (``PIL.ImageOps.exif_transpose``) before anything else looks at its size or pixels.
2. **True bit depth.** 16-bit files (PNG grey ``I;16`` / ``I;16B``, ``I`` from a 16-bit PNG or TIFF,
   48/64-bit RGB(A) PNG and TIFF) are scaled to 8 bits by their real range:
   ``round(value * 255 / (2**bits - 1))``, i.e. ``round(value / 257)`` for 16 bits. (PIL's own
   ``convert("RGB")`` clips 16-bit grey to white and truncates 16-bit colour.) Modes whose range is
   unknown (32-bit integer, 32-bit float) are refused with an :class:`ImageDecodeError`, never guessed.
3. **Minimum size.** Images whose shorter side is below ``min_size`` (default :data:`MIN_IMAGE_SIDE`
   = 8 px) are refused with their size: resizing a 1x1 or 4x4 file to the training resolution only
   gives a flat or blocky blur. Masks have no minimum of their own (they must match their image).
4. **Decompression bombs.** PIL refuses images of more than twice ``PIL.Image.MAX_IMAGE_PIXELS``
   (89,478,485 by default) and warns above it; both are reported with the file, its pixel count and
   the limit. For trusted files raise the limit with the environment variable
   ``RESTORELAB_MAX_IMAGE_PIXELS=<pixels>`` (``0`` = no limit), read when this module is imported
   (also in DataLoader workers and the shard CLI), or set ``PIL.Image.MAX_IMAGE_PIXELS`` in Python.

Colour images of 8 bits per channel are converted with PIL as usual: RGBA / LA drop the alpha
channel (the colour values are kept), grey and palette images are expanded to RGB. Masks become
8-bit grey (``L``) by the same rules. Errors are :class:`ImageDecodeError` (a ``ValueError``) whose
message names the file and whose ``reason`` is a short category for counting skipped samples.
"""
from __future__ import annotations

import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "MIN_IMAGE_SIDE",
    "MAX_PIXELS_ENV",
    "DECODE_REASONS",
    "ImageDecodeError",
    "DecodedImage",
    "read_image",
    "decode_image",
    "decode_mask",
]

MIN_IMAGE_SIDE = 8
"""Images with a shorter side below this many pixels are refused (see the module docstring)."""

MAX_PIXELS_ENV = "RESTORELAB_MAX_IMAGE_PIXELS"
"""Environment variable that sets ``PIL.Image.MAX_IMAGE_PIXELS`` for trusted large files (0 = no limit)."""

UNDECODABLE, TOO_SMALL, BOMB, UNSUPPORTED = "undecodable image", "image too small", "decompression bomb", "unsupported image mode"
DECODE_REASONS = (UNDECODABLE, TOO_SMALL, BOMB, UNSUPPORTED)
"""The ``reason`` categories of :class:`ImageDecodeError`."""

Source = Union[bytes, bytearray, memoryview, str, os.PathLike]


def _apply_pixel_limit_from_env() -> None:
    value = os.environ.get(MAX_PIXELS_ENV)
    if value is None or not value.strip():
        return
    try:
        pixels = int(float(value))
    except ValueError:
        raise ValueError(f"{MAX_PIXELS_ENV}={value!r} is not a number; give a pixel count, or 0 for no limit") from None
    Image.MAX_IMAGE_PIXELS = None if pixels <= 0 else pixels


_apply_pixel_limit_from_env()


class ImageDecodeError(ValueError):
    """An image file cannot be turned into faithful 8-bit pixels; the message names the file, ``reason`` the kind."""

    def __init__(self, message: str, reason: str = UNDECODABLE) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image: ``image`` (PIL, 8-bit ``RGB`` or ``L`` for masks, upright) and facts about the file.

    Attributes:
        image: the 8-bit image, EXIF orientation applied.
        format: PIL's name of the file format (``PNG``, ``JPEG``, ...), ``None`` if unknown.
        mode: PIL mode of the file as opened (``RGB``, ``I;16``, ``P``, ...).
        bit_depth: bits per channel of the file (8 or 16; 1 for bilevel).
        reoriented: an EXIF orientation other than "upright" was applied.
    """

    image: Image.Image
    format: str | None
    mode: str
    bit_depth: int
    reoriented: bool

    def array(self) -> np.ndarray:
        """The pixels as a writable uint8 array, ``(H, W, 3)`` for images, ``(H, W)`` for masks."""
        return np.array(self.image, dtype=np.uint8)


def _name(source: Source, what: str | None) -> str:
    if what is not None:
        return what
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return "<image bytes>"


def _bomb_message(name: str, err: Exception, refused: bool) -> str:
    found = re.search(r"\((\d+) pixels\)", str(err))
    pixels = f"{int(found.group(1)):,} pixels" if found else "its pixel count"
    limit = Image.MAX_IMAGE_PIXELS
    what = (
        f"{name}: decompression bomb: {pixels} is more than twice PIL's limit Image.MAX_IMAGE_PIXELS = {limit:,}, "
        f"so PIL refuses to decode it"
        if refused
        else f"{name}: possible decompression bomb: {pixels} is above PIL's limit Image.MAX_IMAGE_PIXELS = {limit:,} "
        f"(it is decoded anyway, up to twice the limit)"
    )
    return (
        f"{what}. If the file is trusted, raise the limit: set the environment variable {MAX_PIXELS_ENV}=<pixels> "
        f"(0 = no limit) for the run, or PIL.Image.MAX_IMAGE_PIXELS in Python; otherwise remove the file"
    )


def _open(data: bytes, name: str) -> tuple[Image.Image, str]:
    """Open and load with PIL -> (image, raw mode of the stored data); decompression bombs name the file."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
            rawmode = _rawmode(image.tile)  # gone after load()
            image.load()
        except Image.DecompressionBombError as err:
            raise ImageDecodeError(_bomb_message(name, err, refused=True), BOMB) from err
        except Exception as err:  # PIL raises many types for broken data
            detail = "no known image format, or corrupt data" if isinstance(err, UnidentifiedImageError) else str(err)
            raise ImageDecodeError(f"{name} is not a readable image ({type(err).__name__}: {detail}); "
                                   f"remove it or convert it to PNG/JPEG", UNDECODABLE) from err
    for warning in caught:
        if issubclass(warning.category, Image.DecompressionBombWarning):
            warnings.warn(_bomb_message(name, warning.message, refused=False), Image.DecompressionBombWarning, stacklevel=4)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return image, rawmode


def _rawmode(tile: list) -> str:
    if not tile:
        return ""
    args = tile[0].args if hasattr(tile[0], "args") else tile[0][3]
    return args if isinstance(args, str) else str(args[0]) if isinstance(args, tuple) and args else ""


def _scale_to_8bit(values: np.ndarray, bits: int, name: str, mode: str) -> np.ndarray:
    top = (1 << bits) - 1
    values = values.astype(np.float64)
    if values.size and (values.min() < 0 or values.max() > top):
        raise ImageDecodeError(
            f"{name}: mode {mode} holds values {values.min():g}..{values.max():g}, outside the {bits}-bit range 0..{top}; "
            f"cannot convert it to 8 bits faithfully: save it as an 8-bit or 16-bit PNG",
            UNSUPPORTED,
        )
    return np.rint(values * (255.0 / top)).astype(np.uint8)


def _integer_bits(image: Image.Image) -> int | None:
    """Bits per sample of a mode ``I`` image, when the file says (16-bit PNG, TIFF BitsPerSample)."""
    if image.format == "PNG":
        return 16
    tags = getattr(image, "tag_v2", None)
    if tags is not None and 258 in tags:
        bits = tags[258]
        return int(bits[0] if isinstance(bits, tuple) else bits)
    return None


def _high_depth_colour(data: bytes, name: str, mode: str) -> np.ndarray:
    """16-bit-per-channel colour (48/64-bit PNG or TIFF), which PIL truncates to its high byte: read it with OpenCV."""
    import cv2

    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)  # as stored: no EXIF rotation, BGR(A)
    if array is None or array.dtype != np.uint16:
        raise ImageDecodeError(
            f"{name}: {mode} image with 16 bits per channel that OpenCV cannot read as 16-bit data; "
            f"convert it to an 8-bit PNG", UNSUPPORTED
        )
    if array.ndim == 2:
        grey = _scale_to_8bit(array, 16, name, mode)
        return np.repeat(grey[..., None], 3, axis=2)
    channels = array.shape[2]
    if channels in (1, 2):
        return np.repeat(_scale_to_8bit(array[..., 0], 16, name, mode)[..., None], 3, axis=2)
    return _scale_to_8bit(array[..., 2::-1], 16, name, mode)  # BGR(A) -> RGB, alpha dropped


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(0x0112, 1) or 1)
    except Exception:  # a broken EXIF block: treat as upright, as viewers do
        return 1


def _to_8bit(image: Image.Image, rawmode: str, data: bytes, name: str, grey: bool) -> tuple[Image.Image, int, bool]:
    """8-bit ``RGB`` (or ``L``) of an upright ``image``, scaled by its true bit depth -> (image, bits, from_raw_data).

    ``from_raw_data``: the pixels were re-read from ``data`` (16-bit colour), so the EXIF orientation is still to apply.
    """
    mode = image.mode
    target = "L" if grey else "RGB"
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        bits = 16 if mode != "I" else _integer_bits(image)
        if bits is None or bits > 16:
            raise ImageDecodeError(
                f"{name}: mode {mode} ({bits or 'unknown'}-bit integer {image.format or ''} image): its value range is "
                f"unknown, so it cannot be converted to 8 bits faithfully; save it as an 8-bit or 16-bit PNG",
                UNSUPPORTED,
            )
        values = _scale_to_8bit(np.asarray(image), bits, name, mode)
        out = Image.fromarray(values, mode="L")
        return (out if grey else out.convert("RGB")), bits, False
    if mode == "F" or mode.startswith(("I;32", "F;")):
        raise ImageDecodeError(
            f"{name}: mode {mode} (32-bit floating point {image.format or ''} image): its value range is unknown, so it "
            f"cannot be converted to 8 bits faithfully; save it as an 8-bit or 16-bit PNG",
            UNSUPPORTED,
        )
    if mode in ("RGB", "RGBA", "LA", "RGBX", "RGBa") and ";16" in rawmode:
        rgb = Image.fromarray(_high_depth_colour(data, name, mode), mode="RGB")
        return (rgb.convert("L") if grey else rgb), 16, True
    try:
        return (image if image.mode == target else image.convert(target)), 1 if mode == "1" else 8, False
    except Exception as err:  # e.g. LAB / HSV without a colour profile
        raise ImageDecodeError(
            f"{name}: mode {mode} cannot be converted to {target} ({type(err).__name__}: {err}); save it as an 8-bit "
            f"RGB PNG or JPEG", UNSUPPORTED
        ) from err


_TRANSPOSE = {  # EXIF orientation -> the transposition that makes the image upright (as ImageOps.exif_transpose)
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def read_image(source: Source, what: str | None = None, *, mask: bool = False, min_size: int = MIN_IMAGE_SIDE) -> DecodedImage:
    """Decode an image file (path or bytes) to upright 8-bit RGB (``mask=True``: 8-bit grey).

    Args:
        source: a path, or the encoded bytes (e.g. a shard member).
        what: how to name the image in messages (default: the path); e.g. ``"shard.tar:key"``.
        mask: decode to grey ``L`` (a hole mask) instead of RGB.
        min_size: refuse images whose shorter side is below this (0 disables; masks usually pass 0).

    Raises:
        FileNotFoundError: the path does not exist (the message names it).
        ImageDecodeError: undecodable data, a decompression bomb, a mode without a faithful 8-bit
            conversion, or an image smaller than ``min_size``; ``.reason`` says which.
    """
    name = _name(source, what)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{name} does not exist" if not path.exists() else f"{name} is not a file")
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ImageDecodeError(f"{name} cannot be read ({err.strerror or err})", UNDECODABLE) from err
    else:
        data = bytes(source)
    opened, rawmode = _open(data, name)
    try:
        orientation = _orientation(opened)
        if orientation in _TRANSPOSE:  # upright before anything looks at the size or the pixels
            ImageOps.exif_transpose(opened, in_place=True)
        converted, bits, from_raw = _to_8bit(opened, rawmode, data, name, grey=mask)
        if from_raw and orientation in _TRANSPOSE:  # re-read from the file as stored: same turn as exif_transpose
            converted = converted.transpose(_TRANSPOSE[orientation])
    except BaseException:
        opened.close()
        raise
    if converted is not opened:
        opened.close()
    width, height = converted.size
    if min(width, height) < min_size:
        raise ImageDecodeError(
            f"{name} is {width}x{height} pixels (WxH); images must be at least {min_size} px on the shorter side "
            f"(a smaller one would only be upscaled into a blur): remove it, or replace it by a larger original",
            TOO_SMALL,
        )
    return DecodedImage(converted, opened.format, opened.mode, bits, orientation in _TRANSPOSE)


def decode_image(source: Source, what: str | None = None, *, min_size: int = MIN_IMAGE_SIDE) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB pixels of an image file or bytes (see :func:`read_image` for the rules)."""
    return read_image(source, what, min_size=min_size).array()


def decode_mask(source: Source, what: str | None = None) -> np.ndarray:
    """``(H, W)`` uint8 grey pixels of a mask file or bytes (same rules as images, no minimum size).

    The caller thresholds (the project's masks: pixel >= 128 = hole).
    """
    return read_image(source, what, mask=True, min_size=0).array()
