"""Pure rendering: tensors in, images out. No model runs here.

Heat maps are drawn by normalizing them to [0, 1] (:func:`convscope.core.maps.normalize_maps`:
arithmetic, so it lives in core), mapping them through a matplotlib colormap (a 256-entry lookup
table applied in torch) and alpha-blending them over the image the model saw.
"""

from __future__ import annotations

import base64
import io
from functools import lru_cache

import numpy as np
import torch
from PIL import Image

__all__ = [
    "colorize",
    "colormap_names",
    "is_colormap",
    "figure_image",
    "overlay",
    "png_bytes",
    "png_data_uri",
]


# matplotlib's "jet" as its breakpoints (x, value) per channel, all continuous, so that the default
# colormap needs no matplotlib import (0.15-0.3 s of a command's start; tests check the table
# against matplotlib's).
_JET = (
    ((0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)),
    ((0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)),
    ((0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)),
)


def _segments(x: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Linear interpolation between breakpoints, in the order of operations matplotlib uses for
    its lookup tables (so that values on .5 round the same way)."""
    n = len(x) - 1
    x, xs, ys = x * n, points[:, 0] * n, points[:, 1]
    ind = np.searchsorted(xs, x)[1:-1]
    step = (x[1:-1] - xs[ind - 1]) / (xs[ind] - xs[ind - 1])
    return np.concatenate([ys[:1], step * (ys[ind] - ys[ind - 1]) + ys[ind - 1], ys[-1:]])


def colormap_names() -> list[str]:
    """The colormap names :func:`colorize` takes (matplotlib's)."""
    import matplotlib

    return list(matplotlib.colormaps)


def is_colormap(name: str) -> bool:
    """Whether :func:`colorize` takes ``name`` (the default needs no matplotlib import)."""
    return name == "jet" or name in colormap_names()


@lru_cache(maxsize=16)
def _lut(cmap: str) -> torch.Tensor:
    if cmap == "jet":  # 256 entries at i/255, linear between the breakpoints, as matplotlib's
        x = np.linspace(0.0, 1.0, 256)
        rgb = np.stack([_segments(x, np.array(channel)) for channel in _JET], axis=1)
        return torch.from_numpy((rgb * 255).round().astype(np.uint8))
    import matplotlib

    try:
        cm = matplotlib.colormaps[cmap]
    except KeyError:
        from convscope.errors import ConvscopeError, did_you_mean

        raise ConvscopeError(
            f"unknown colormap {cmap!r}{did_you_mean(cmap, matplotlib.colormaps)}"
        ) from None
    rgb = cm(np.linspace(0.0, 1.0, 256))[:, :3]
    return torch.from_numpy((rgb * 255).round().astype(np.uint8))


def colorize(heat: torch.Tensor, cmap: str = "jet") -> torch.Tensor:
    """(..., H, W) values in [0, 1] -> (..., H, W, 3) uint8 colours."""
    lut = _lut(cmap).to(heat.device)
    idx = (heat.detach().float().clamp(0, 1) * 255).round().long()
    return lut[idx]


def overlay(
    pixels: torch.Tensor | None, heat: torch.Tensor, cmap: str = "jet", alpha: float = 0.5
) -> torch.Tensor:
    """Blend a colorized heat map (H, W in [0, 1]) over ``pixels`` ((H, W, 3) uint8).

    Without pixels the colorized map alone is returned.
    """
    colour = colorize(heat, cmap).float()
    if pixels is None:
        return colour.to(torch.uint8)
    if pixels.shape[:2] != heat.shape[-2:]:
        raise ValueError(
            f"image {tuple(pixels.shape[:2])} and map {tuple(heat.shape)} differ in size"
        )
    blend = (1 - alpha) * pixels.float() + alpha * colour
    return blend.round().clamp(0, 255).to(torch.uint8)


def to_pil(image: torch.Tensor) -> Image.Image:
    """(H, W, 3) or (H, W) uint8 tensor -> PIL image."""
    return Image.fromarray(image.detach().cpu().numpy())


def png_bytes(image: torch.Tensor | Image.Image) -> bytes:
    pil = image if isinstance(image, Image.Image) else to_pil(image)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def png_data_uri(image: torch.Tensor | Image.Image) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def figure_image(fig: object) -> Image.Image:
    """A matplotlib figure as an RGB PIL image (at the figure's dpi); the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png")  # type: ignore[attr-defined]
    finally:
        plt.close(fig)  # type: ignore[arg-type]
    buf.seek(0)
    return Image.open(buf).convert("RGB")
