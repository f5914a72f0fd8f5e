"""Receptive fields as pictures: boxes drawn on the image, effective receptive fields as heat maps.
Pure rendering: tensors in, images out."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image, ImageDraw

from convscope.viz.render import colorize

__all__ = ["BOX_COLOURS", "draw_boxes", "erf_picture"]

# Distinct on photos and for colour-blind readers (Okabe & Ito).
BOX_COLOURS = ((230, 159, 0), (86, 180, 233), (0, 158, 115), (204, 121, 167), (240, 228, 66))


def draw_boxes(
    pixels: torch.Tensor | Image.Image,
    boxes: Sequence[tuple[int, int, int, int]],
    labels: Sequence[str] | None = None,
    colours: Sequence[tuple[int, int, int]] = BOX_COLOURS,
    scale: int = 2,
    width: int = 2,
) -> Image.Image:
    """The image (H, W, 3 uint8, or PIL) upscaled ``scale`` times (nearest), with each half-open
    box ``(top, left, bottom, right)`` outlined in its colour inside its pixels; with ``labels``,
    a legend band below the image names each colour."""
    img = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels.cpu().numpy())
    img = img.convert("RGB")
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    if labels:
        band = Image.new("RGB", (img.width, img.height + 18), (255, 255, 255))
        band.paste(img, (0, 0))
        img = band
    draw = ImageDraw.Draw(img)
    x = 4
    for k, (t, left, b, r) in enumerate(boxes):
        c = tuple(colours[k % len(colours)])
        if b > t and r > left:
            draw.rectangle(
                [left * scale, t * scale, r * scale - 1, b * scale - 1], outline=c, width=width
            )
        if labels:
            y = img.height - 14
            draw.rectangle([x, y + 1, x + 10, y + 11], fill=c)
            draw.text((x + 14, y), labels[k], fill=(0, 0, 0))
            x += 14 + 7 * len(labels[k]) + 12
    return img


def erf_picture(
    erf: torch.Tensor,
    box: tuple[int, int, int, int] | None = None,
    size: int = 224,
    cmap: str = "magma",
    colour: tuple[int, int, int] = (86, 180, 233),
    zoom: bool = False,
) -> Image.Image:
    """An (H, W) non-negative map as a heat map scaled by its maximum, with ``box`` outlined,
    enlarged (nearest neighbour) to about ``size`` pixels on the longer side. ``zoom``: show only
    the box and a margin of a quarter of its size around it."""
    m = erf.detach().float().cpu()
    peak = m.max()
    rgb = colorize(m / peak if peak > 0 else m, cmap)
    if zoom and box is not None:
        t, left, b, r = box
        mh, mw = max(1, (b - t) // 4), max(1, (r - left) // 4)
        t0, l0 = max(0, t - mh), max(0, left - mw)
        b0, r0 = min(m.shape[0], b + mh), min(m.shape[1], r + mw)
        rgb = rgb[t0:b0, l0:r0]
        box = (t - t0, left - l0, b - t0, r - l0)
    h, w = rgb.shape[:2]
    scale = max(1, round(size / max(h, w)))
    return draw_boxes(
        rgb.contiguous(), [box] if box is not None else [], colours=[colour], scale=scale
    )
