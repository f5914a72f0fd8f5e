"""Load images from files, bundled samples, PIL images and numpy arrays, always as 8-bit RGB.

Every input goes through the same exact conversions (see :func:`load_image`) and every failure is
an :class:`~convscope.errors.ImageError` whose one-line message names the input and the problem.
This module deliberately does not import torch.
"""

from __future__ import annotations

import os
import re
import unicodedata
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from convscope.errors import ImageError

__all__ = ["ImageSource", "image_label", "load_image", "load_images"]

#: What :func:`load_image` accepts: a path, ``"sample:NAME"``, a PIL image or a numpy array.
ImageSource = str | os.PathLike[str] | Image.Image | np.ndarray

SAMPLE_PREFIX = "sample:"

_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")
_UNSAFE_LABEL_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def load_image(src: ImageSource) -> Image.Image:
    """Load one image as a fully decoded 8-bit ``"RGB"`` PIL image.

    ``src`` is a path to an image file, ``"sample:NAME"`` (see ``convscope samples``), a PIL image
    or a numpy array of shape HxW, HxWx1, HxWx3 or HxWx4 with dtype uint8, uint16, bool or float.

    Conversions, all exact:

    * The EXIF orientation is applied (files and PIL images), so the result is upright.
    * Greyscale (``"L"``, ``"1"``, HxW, HxWx1) is replicated into three channels; bool is 0/255.
    * Palette images are expanded through their palette.
    * Transparency (``"RGBA"``, ``"LA"``, ``"PA"``, palette or colour-key transparency, HxWx4)
      is composited onto a **white** background: ``out = round(a*c + (1-a)*255)`` with
      ``a = alpha/255``.
    * 16-bit data (``"I;16*"`` modes, 16-bit greyscale PNGs, mode ``"I"`` files with values in
      0..65535 such as 16-bit PGMs, uint16 arrays) is scaled to 8 bit as ``round(v/257)``, so
      65535 -> 255 and 25700 -> 100; Pillow's clipping at 255 is never used.
    * Float data (mode ``"F"``, float arrays) must be finite and within [0, 1]; it becomes
      ``round(v*255)``.
    * CMYK, YCbCr, LAB and HSV are converted to RGB by Pillow.

    Raises :class:`ImageError` for a missing, unreadable, corrupt, truncated or non-image file,
    a directory, an image over Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``,
    refused already at the warning threshold), a zero-size image, an unsupported array shape,
    dtype or value range, or an unsupported input type.
    """
    if isinstance(src, str) and src.startswith(SAMPLE_PREFIX):
        from convscope.data.sample_catalog import sample_source

        return load_image(sample_source(src[len(SAMPLE_PREFIX) :]))
    if isinstance(src, (str, os.PathLike)):
        return _load_file(src)
    if isinstance(src, Image.Image):
        what = "the given PIL image"
        if getattr(src, "filename", ""):
            what = f"the PIL image from {src.filename}"
        try:
            src.load()
        except Exception as exc:
            raise ImageError(f"cannot decode {what}: {_reason(exc)}") from exc
        return _pil_to_rgb(src, what)
    if isinstance(src, np.ndarray):
        what = f"the given array (shape {src.shape}, dtype {src.dtype})"
        if src.ndim == 3 and src.shape[2] == 2:
            raise ImageError(
                f"{what} has an unsupported shape: expected HxW, HxWx1, HxWx3 or HxWx4"
            )
        return _array_to_rgb(src, what)
    raise ImageError(
        f"unsupported image input of type {type(src).__name__}: give a file path, "
        "'sample:NAME', a PIL image or a numpy array"
    )


def load_images(srcs: ImageSource | Sequence[ImageSource]) -> list[Image.Image]:
    """Load one image or a list/tuple of them with :func:`load_image`, in order."""
    items = list(srcs) if isinstance(srcs, (list, tuple)) else [srcs]
    if not items:
        raise ImageError("no images given")
    return [load_image(item) for item in items]


def image_label(src: Any, index: int) -> str:
    """A short, filesystem-safe stem naming ``src`` in output files.

    A path's stem (``"chelsea.png"`` -> ``"chelsea"``), a sample's name (``"sample:coffee"`` ->
    ``"coffee"``), otherwise ``f"image{index}"``. Only ``[A-Za-z0-9._-]`` characters are used.
    """
    stem = ""
    if isinstance(src, str) and src.startswith(SAMPLE_PREFIX):
        stem = src[len(SAMPLE_PREFIX) :]
    elif isinstance(src, (str, os.PathLike)):
        stem = Path(os.fsdecode(src)).stem
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    safe = _UNSAFE_LABEL_CHARS.sub("_", ascii_stem).strip("._-")[:64].rstrip("._-")
    return safe or f"image{index}"


# --- files -----------------------------------------------------------------------------------


def _load_file(path: str | os.PathLike[str]) -> Image.Image:
    name = os.fsdecode(path)
    if not os.path.exists(name):
        raise ImageError(f"no such file: {name}")
    if os.path.isdir(name):
        raise ImageError(f"{name} is a directory, not an image file")
    try:
        fh = open(name, "rb")  # noqa: SIM115 - closed by the with-statement below
    except OSError as exc:
        raise ImageError(f"cannot read {name}: {exc.strerror or exc}") from exc
    with fh, warnings.catch_warnings():
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; refuse both.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(fh) as im:
                _check_size(im, name)
                wide = _png16_colour(im, fh)
                if wide is not None:
                    return _array_to_rgb(wide, name)
                im.load()
                return _pil_to_rgb(im, name)
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _bomb_error(name, _bomb_pixels(exc)) from exc
        except Image.UnidentifiedImageError as exc:
            raise ImageError(f"{name} is not an image file Pillow can read") from exc
        except Exception as exc:  # Pillow's decoders raise many kinds on corrupt data
            raise ImageError(
                f"cannot decode {name}: corrupt or truncated ({_reason(exc)})"
            ) from exc


_PNG16 = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L"}


def _png16_colour(im: Image.Image, fh: Any) -> np.ndarray | None:
    """The full 16-bit (H, W, 3 or 4) uint16 data of a 16-bit colour PNG, else None.

    Pillow has no 16-bit colour mode: it keeps the high byte of each sample (``v >> 8``, so 383
    becomes 1 where ``round(383/257)`` is 1 but 129 becomes 0 where it is 1). The file is decoded
    twice through Pillow's own PNG decoder (filters and interlacing handled there), once keeping
    the high bytes and once reading the samples as little-endian, which keeps the low bytes."""
    if im.format != "PNG" or len(im.tile) != 1:
        return None
    tile = im.tile[0]
    raw = tile[3][0] if isinstance(tile[3], tuple) else tile[3]
    if raw not in _PNG16:
        return None
    key = im.info.get("transparency")
    im.load()
    high = np.asarray(im).astype(np.uint16)
    fh.seek(0)
    with Image.open(fh) as again:
        args = (_PNG16[raw], *tile[3][1:]) if isinstance(tile[3], tuple) else _PNG16[raw]
        first = again.tile[0]
        again.tile = [
            first._replace(args=args) if hasattr(first, "_replace") else (*first[:3], args)
        ]
        again.load()
        data = (high << 8) | np.asarray(again).astype(np.uint16)
    data = _exif_orient(data, im.getexif().get(0x0112, 1))
    if isinstance(key, tuple) and data.shape[2] == 3:  # colour-key transparency (tRNS)
        alpha = np.where((data == np.array(key, dtype=np.uint16)).all(axis=2), 0, 65535)
        data = np.concatenate([data, alpha[:, :, None].astype(np.uint16)], axis=2)
    return data


def _exif_orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to an (H, W, C) array, as ``ImageOps.exif_transpose``."""
    if orientation == 2:
        a = a[:, ::-1]
    elif orientation == 3:
        a = a[::-1, ::-1]
    elif orientation == 4:
        a = a[::-1]
    elif orientation == 5:
        a = a.transpose(1, 0, 2)
    elif orientation == 6:
        a = np.rot90(a, -1)
    elif orientation == 7:
        a = a[::-1, ::-1].transpose(1, 0, 2)
    elif orientation == 8:
        a = np.rot90(a, 1)
    return np.ascontiguousarray(a)


def _check_size(im: Image.Image, name: str) -> None:
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageError(f"{name} has zero size ({width}x{height} pixels)")
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise _bomb_error(name, width * height)


def _bomb_pixels(exc: BaseException) -> int | None:
    match = _BOMB_PIXELS.search(str(exc))
    return int(match.group(1)) if match else None


def _bomb_error(name: str, pixels: int | None) -> ImageError:
    count = f"{pixels} pixels" if pixels is not None else "too many pixels"
    return ImageError(
        f"image too large: {name} has {count}, over Pillow's decompression-bomb limit "
        f"Image.MAX_IMAGE_PIXELS={Image.MAX_IMAGE_PIXELS}; if you trust this file, raise it "
        "(--max-pixels N on the command line, PIL.Image.MAX_IMAGE_PIXELS = N in Python)"
    )


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- PIL images ------------------------------------------------------------------------------


def _pil_to_rgb(im: Image.Image, what: str) -> Image.Image:
    """Convert a loaded PIL image of any mode to RGB with the documented rules."""
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageError(f"{what} has zero size ({width}x{height} pixels)")
    im = ImageOps.exif_transpose(im) or im
    mode = im.mode
    key = im.info.get("transparency")
    if mode == "RGB" and key is None:
        return im.copy()
    if mode == "La":
        im, mode = im.convert("LA"), "LA"
    if mode == "LA":
        return _array_to_rgb(np.asarray(im), what)
    if mode in ("RGBA", "PA", "RGBa") or (mode in ("1", "L", "P", "RGB") and key is not None):
        return _array_to_rgb(np.asarray(im.convert("RGBA")), what)
    if mode in ("1", "L", "RGB"):
        return _array_to_rgb(np.asarray(im), what)
    if mode == "P":
        return im.convert("RGB")
    if mode.startswith("I;16") or mode == "I":
        data = np.asarray(im)
        lo, hi = int(data.min()), int(data.max())
        if lo < 0 or hi > 65535:
            raise ImageError(
                f"{what} is a 32-bit integer image with values {lo}..{hi}; only 16-bit data "
                "(0..65535) is supported"
            )
        data = data.astype(np.uint16)
        if isinstance(key, int):  # colour-key transparency of a 16-bit greyscale PNG
            alpha = np.where(data == key, 0, 65535).astype(np.uint16)
            data = np.stack([data, alpha], axis=2)
        return _array_to_rgb(data, what)
    if mode == "F":
        return _array_to_rgb(np.asarray(im), what)
    try:
        return im.convert("RGB")
    except Exception as exc:
        raise ImageError(f"{what} has unsupported image mode {mode!r}") from exc


# --- arrays ----------------------------------------------------------------------------------


def _array_to_rgb(arr: np.ndarray, what: str) -> Image.Image:
    """Convert an HxW / HxWxC (C in 1, 2, 3, 4) array to an RGB image; C=2 is grey+alpha."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ImageError(f"{what} has an unsupported shape: expected HxW, HxWx1, HxWx3 or HxWx4")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(f"{what} has zero size")
    values = _to_unit255(arr, what)  # float64 in [0, 255]
    channels = values.shape[2]
    if channels in (2, 4):
        colour, alpha = values[:, :, :-1], values[:, :, -1:] / 255.0
        values = alpha * colour + (1.0 - alpha) * 255.0
    if values.shape[2] == 1:
        values = np.repeat(values, 3, axis=2)
    rgb = np.ascontiguousarray(np.floor(values + 0.5).clip(0, 255).astype(np.uint8))
    return Image.fromarray(rgb)


def _to_unit255(arr: np.ndarray, what: str) -> np.ndarray:
    """Values of ``arr`` on a 0..255 float64 scale, by the dtype rules of :func:`load_image`."""
    kind = arr.dtype
    if kind.kind == "b":
        return arr.astype(np.float64) * 255.0
    if kind.kind == "u" and kind.itemsize == 1:
        return arr.astype(np.float64)
    if kind.kind == "u" and kind.itemsize == 2:
        return arr.astype(np.float64) / 257.0
    if kind.kind == "f":
        data = arr.astype(np.float64)
        if not np.isfinite(data).all():
            raise ImageError(f"{what} contains NaN or infinite values")
        lo, hi = float(data.min()), float(data.max())
        if lo < 0.0 or hi > 1.0:
            raise ImageError(
                f"{what} has float values {lo:g}..{hi:g}; float images must be within [0, 1]"
            )
        return data * 255.0
    raise ImageError(
        f"{what} has unsupported dtype {kind}: use uint8 (0..255), uint16, bool or float in [0, 1]"
    )
