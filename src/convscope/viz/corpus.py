"""Pictures of the dataset level: unit cards (top-k patches), layer grids of cards, the
neighbours figure and the embedding canvas. Pure rendering: uint8 arrays in, PIL images out."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["grid_canvas", "label_colours", "layer_grid", "neighbours_figure", "unit_card"]

_BG = (255, 255, 255)
_INK = (40, 40, 40)


def _fit(a: np.ndarray, size: int) -> Image.Image:
    """A square thumbnail of ``size`` pixels (centre-cropped to a square, then resized)."""
    im = Image.fromarray(np.ascontiguousarray(a))
    w, h = im.size
    s = min(w, h)
    if s <= 0:
        return Image.new("RGB", (size, size), (200, 200, 200))
    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    resample = Image.NEAREST if s < size // 2 else Image.BILINEAR
    return im.convert("RGB").resize((size, size), resample)


def unit_card(
    patches: Sequence[np.ndarray],
    values: Sequence[float],
    title: str,
    *,
    beside: Sequence[np.ndarray] | None = None,
    size: int = 64,
    per_row: int = 3,
) -> Image.Image:
    """A unit's top-k patches in a grid (Zeiler & Fergus's Fig. 2), best first, each with its
    activation; with ``beside`` (e.g. guided backprop cropped to the same box) a pair per hit."""
    k = len(patches)
    cols = min(per_row, k) or 1
    rows = math.ceil(k / cols) if k else 1
    pair = 2 if beside is not None else 1
    pad, text_h, title_h = 3, 12, 16
    cell_w, cell_h = pair * size + (pair - 1) * 2 + pad, size + text_h + pad
    canvas = Image.new("RGB", (cols * cell_w + pad, title_h + rows * cell_h + pad), _BG)
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 2), title, fill=_INK)
    for n, (patch, value) in enumerate(zip(patches, values)):
        r, c = divmod(n, cols)
        x, y = pad + c * cell_w, title_h + r * cell_h
        canvas.paste(_fit(patch, size), (x, y))
        if beside is not None:
            canvas.paste(_fit(beside[n], size), (x + size + 2, y))
        draw.text((x, y + size + 1), f"{value:.3g}", fill=_INK)
    return canvas


def layer_grid(cards: Sequence[Image.Image], per_row: int = 4, gap: int = 8) -> Image.Image:
    """Cards side by side, ``per_row`` to a row."""
    if not cards:
        return Image.new("RGB", (1, 1), _BG)
    w = max(c.width for c in cards)
    h = max(c.height for c in cards)
    cols = min(per_row, len(cards))
    rows = math.ceil(len(cards) / cols)
    canvas = Image.new("RGB", (cols * (w + gap) - gap, rows * (h + gap) - gap), _BG)
    for n, card in enumerate(cards):
        r, c = divmod(n, cols)
        canvas.paste(card, (c * (w + gap), r * (h + gap)))
    return canvas


def neighbours_figure(
    queries: Sequence[np.ndarray],
    neighbours: Sequence[Sequence[np.ndarray]],
    scores: Sequence[Sequence[float]] | None = None,
    *,
    size: int = 80,
    query_labels: Sequence[str] | None = None,
) -> Image.Image:
    """Lecture 002's figure: each query in the first column, its nearest corpus images beside it
    (nearest first), a gap and a line between the query and its neighbours."""
    k = max((len(n) for n in neighbours), default=0)
    pad, gap, text_h = 3, 14, 12 if scores is not None or query_labels else 0
    width = pad + size + gap + k * (size + pad)
    height = pad + len(queries) * (size + text_h + pad)
    canvas = Image.new("RGB", (width, height), _BG)
    draw = ImageDraw.Draw(canvas)
    for q, (query, row) in enumerate(zip(queries, neighbours)):
        y = pad + q * (size + text_h + pad)
        canvas.paste(_fit(query, size), (pad, y))
        if query_labels:
            draw.text((pad, y + size), query_labels[q][: size // 6], fill=_INK)
        x_line = pad + size + gap // 2
        draw.line([(x_line, y), (x_line, y + size)], fill=(150, 150, 150), width=2)
        for j, img in enumerate(row):
            x = pad + size + gap + j * (size + pad)
            canvas.paste(_fit(img, size), (x, y))
            if scores is not None:
                draw.text((x, y + size), f"{scores[q][j]:.3f}", fill=_INK)
    return canvas


def label_colours(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct colours (matplotlib's tab20, then hsv)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab20" if n <= 20 else "hsv"]
    return [
        tuple(int(round(255 * v)) for v in cmap(i / max(1, n) if n > 20 else i)[:3])
        for i in range(n)
    ]


def grid_canvas(
    thumbs: Sequence[np.ndarray],
    cells: np.ndarray,
    cols: int,
    rows: int,
    *,
    labels: Sequence[int] | np.ndarray | None = None,
    label_names: Sequence[str] | None = None,
    legend: int = 12,
    border: int = 3,
) -> Image.Image:
    """Thumbnails (all the same square size) at their grid ``cells`` ((n, 2): column, row) on one
    canvas; with ``labels``, each thumbnail framed in its label's colour and a legend of the
    ``legend`` most frequent labels (the rest grey)."""
    if not len(thumbs):
        raise ValueError("no thumbnails to place")
    s = np.asarray(thumbs[0]).shape[0]
    step = s + (2 * border if labels is not None else 1)
    colours: dict[int, tuple[int, int, int]] = {}
    legend_rows: list[tuple[tuple[int, int, int], str, int]] = []
    if labels is not None:
        labels = [int(v) for v in labels]
        counts: dict[int, int] = {}
        for v in labels:
            counts[v] = counts.get(v, 0) + 1
        top = sorted(counts, key=lambda v: (-counts[v], v))[:legend]
        for v, colour in zip(top, label_colours(len(top))):
            colours[v] = colour
            name = (
                label_names[v] if label_names is not None and 0 <= v < len(label_names) else str(v)
            )
            legend_rows.append((colour, name.split(",")[0], counts[v]))
    legend_h = 14 * math.ceil(len(legend_rows) / 3) + 6 if legend_rows else 0
    canvas = Image.new("RGB", (cols * step, rows * step + legend_h), _BG)
    draw = ImageDraw.Draw(canvas)
    for n, (thumb, (c, r)) in enumerate(zip(thumbs, np.asarray(cells))):
        x, y = int(c) * step, int(r) * step
        if labels is not None:
            draw.rectangle(
                [x, y, x + step - 1, y + step - 1], fill=colours.get(labels[n], (190, 190, 190))
            )
            canvas.paste(Image.fromarray(np.ascontiguousarray(thumb)), (x + border, y + border))
        else:
            canvas.paste(Image.fromarray(np.ascontiguousarray(thumb)), (x, y))
    col_w = max(1, canvas.width // 3)
    for n, (colour, name, count) in enumerate(legend_rows):
        r, c = divmod(n, 3)
        x, y = 4 + c * col_w, rows * step + 4 + r * 14
        draw.rectangle([x, y + 1, x + 10, y + 11], fill=colour)
        draw.text((x + 14, y), f"{name[: col_w // 7]} ({count})", fill=_INK)
    return canvas
