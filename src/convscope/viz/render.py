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
    "figure_image",
    "overlay",
    "png_bytes",
    "png_data_uri",
]


@lru_cache(maxsize=16)
def _lut(cmap: str) -> torch.Tensor:
    import matplotlib

    try:
        cm = matplotlib.colormaps[cmap]
    except KeyError:
        raise ValueError(f"unknown colormap {cmap!r}") from None
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
