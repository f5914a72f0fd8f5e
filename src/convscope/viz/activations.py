"""Feature maps as pictures: one layer's channels as a grid, and the whole pipeline as a strip.
Pure rendering: tensors in, images out.

The colour rule (the same everywhere, documented in the README): with ``s`` the scale,

- a map with no negative value (after a ReLU) is drawn by ``v / s`` through ``"gray"``: 0 is black,
  ``s`` is white;
- a map with negative values (a linear projection, a BatchNorm output) is drawn by
  ``(1 + v / s) / 2`` through the diverging ``"RdBu_r"``: 0 is the light middle, ``+s`` dark red,
  ``-s`` dark blue;

and ``s`` is the largest ``|v|`` over every channel of the layer for that image (``"layer"``, the
default, so channels compare) or over each channel alone (``"channel"``, to see the pattern of a
weak channel). Whether a layer is signed is decided once per layer and image, so all its channels
share one colormap.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image, ImageDraw

from convscope.viz.render import colorize
from convscope.viz.weights import tile, upscale

__all__ = ["feature_cells", "feature_grid", "pipeline_strip"]

SIGNED_CMAP = "RdBu_r"
GAP = 215  # the grey between maps in the pipeline strip
POSITIVE_CMAP = "gray"


def feature_cells(
    maps: torch.Tensor, scale: str = "layer", cmap: str | None = None
) -> torch.Tensor:
    """(C, h, w) maps -> (C, h, w, 3) uint8 by the rule above. ``cmap`` replaces the colormap
    (still ``v / s`` for a non-negative layer, ``(1 + v / s) / 2`` for a signed one)."""
    m = maps.detach().float().cpu()
    signed = bool((m < 0).any())
    mag = m.abs()
    if scale == "layer":
        s = mag.amax() if m.numel() else torch.tensor(0.0)
    elif scale == "channel":
        s = mag.reshape(m.shape[0], -1).amax(dim=1).view(-1, 1, 1)
    else:
        raise ValueError(f"scale is 'layer' or 'channel', not {scale!r}")
    s = torch.where(s > 0, s, torch.ones_like(s))
    v = m / s
    if signed:
        return colorize((1 + v) / 2, cmap or SIGNED_CMAP)
    return colorize(v, cmap or POSITIVE_CMAP)


def _fit(pixels: torch.Tensor, height: int) -> Image.Image:
    image = Image.fromarray(pixels.cpu().numpy())
    if image.height != height:
        width = max(1, round(image.width * height / image.height))
        image = image.resize((width, height), Image.BILINEAR)
    return image


def feature_grid(
    maps: torch.Tensor,
    channels: Sequence[int],
    *,
    pixels: torch.Tensor | None = None,
    title: str = "",
    scale: str = "layer",
    cmap: str | None = None,
    cell: int | None = None,
    cols: int | None = None,
) -> Image.Image:
    """A grid of the chosen channels of (C, h, w) ``maps`` (each captioned ``ch K``), upscaled by
    an integer factor to about ``cell`` pixels (default: at least 56), with the input image
    (``pixels``, (H, W, 3) uint8) to its left and ``title`` above. The scale covers every channel
    of ``maps``, also those not drawn."""
    chosen = list(channels)
    cells = feature_cells(maps, scale, cmap)[chosen]
    h, w = cells.shape[1:3]
    factor = max(1, (cell or max(56, h)) // max(h, w))
    cells = upscale(cells, factor)
    ncols = cols or max(1, min(len(chosen), round(len(chosen) ** 0.5 * 1.4)))
    body = tile(cells, ncols, pad=3, captions=[f"ch {c}" for c in chosen])
    left = 0
    side = None
    if pixels is not None:
        side = _fit(pixels, min(224, max(112, body.height)))
        left = side.width + 12
    top = 18 if title else 0
    out = Image.new(
        "RGB", (left + body.width, top + max(body.height, side.height if side else 0)), "white"
    )
    if side is not None:
        out.paste(side, (0, top + 3))
    out.paste(body, (left, top))
    if title:
        ImageDraw.Draw(out).text((3, 3), title, fill=(30, 30, 30))
    return out


def pipeline_strip(
    pixels: torch.Tensor | None,
    stages: Sequence[tuple[str, torch.Tensor]],
    *,
    side: int | None = None,
    gap: int = 1,
    scale: str = "layer",
) -> Image.Image:
    """The whole network on one image, stem to head: for each stage (``(name, (C, h, w) maps)``, in
    forward order) a square block of ``side`` pixels (default: the input's height, else twice the
    largest map) filled with as many of its channels as fit, each drawn at its real resolution
    times one factor shared by every stage, so a 112 x 112 map is 16 times the area of a 28 x 28
    one: early stages show a few large maps, later ones many small ones. Channels are taken in the
    given order (callers pass them strongest first); the caption gives the name, the shape and how
    many channels are shown."""
    if not stages:
        raise ValueError("no stages to draw")
    h_max = max(int(m.shape[-2]) for _, m in stages)
    if side is None:
        side = int(pixels.shape[0]) if pixels is not None else 2 * h_max
    factor = max(1, side // (2 * h_max))
    blocks: list[tuple[Image.Image, list[str]]] = []
    if pixels is not None:
        blocks.append((_fit(pixels, side), ["input", f"3 x {pixels.shape[0]} x {pixels.shape[1]}"]))
    for name, maps in stages:
        c, h, w = maps.shape
        ph, pw = h * factor, w * factor
        per_row, per_col = max(1, side // pw), max(1, side // ph)
        n = min(c, per_row * per_col)
        cells = upscale(feature_cells(maps, scale)[:n], factor)
        # the gaps are added to the block (it grows by a few pixels), not taken from the maps
        block = tile(cells, per_row, pad=0, background=GAP) if n else None
        rows = max(1, -(-n // per_row))
        spaced = Image.new("RGB", (per_row * (pw + gap) - gap, rows * (ph + gap) - gap), (GAP,) * 3)
        for k in range(n):
            r, col = divmod(k, per_row)
            cell_k = block.crop((col * pw, r * ph, (col + 1) * pw, (r + 1) * ph))
            spaced.paste(cell_k, (col * (pw + gap), r * (ph + gap)))
        blocks.append((spaced, [name, f"{c} x {h} x {w}", f"{n} of {c} shown"]))
    margin, caption = 10, 40
    width = sum(b.width for b, _ in blocks) + margin * (len(blocks) + 1)
    height = max(b.height for b, _ in blocks)
    out = Image.new("RGB", (width, height + caption + 2 * margin), "white")
    draw = ImageDraw.Draw(out)
    x = margin
    for block, lines in blocks:
        out.paste(block, (x, margin))
        draw.rectangle(
            (x - 1, margin - 1, x + block.width, margin + block.height), outline=(200, 200, 200)
        )
        for i, line in enumerate(lines):
            draw.text(
                (x, margin + block.height + 4 + 12 * i), line[: block.width // 6], fill=(40, 40, 40)
            )
        x += block.width + margin
    return out
