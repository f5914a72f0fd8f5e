"""Rendering feature visualizations: images in, a grid image out."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

__all__ = ["image_grid"]


def image_grid(
    images: Sequence[Image.Image], columns: int, gap: int = 2, background: int = 255
) -> Image.Image:
    """``images`` (all the same size) left to right, top to bottom, ``columns`` per row, with
    ``gap`` pixels of ``background`` between them."""
    if not images:
        raise ValueError("no images to lay out")
    columns = max(1, min(columns, len(images)))
    w, h = images[0].size
    rows = -(-len(images) // columns)
    sheet = Image.new(
        "RGB", (columns * w + (columns - 1) * gap, rows * h + (rows - 1) * gap), (background,) * 3
    )
    for i, im in enumerate(images):
        r, c = divmod(i, columns)
        sheet.paste(im.convert("RGB"), (c * (w + gap), r * (h + gap)))
    return sheet
