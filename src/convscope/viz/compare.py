"""Side-by-side comparison figures: one image, every method (rendering only)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from PIL import Image

from convscope.core.maps import display_peak
from convscope.viz.render import figure_image

if TYPE_CHECKING:  # a renderer reads results, it never imports what makes them
    from convscope.result import Explanation

__all__ = [
    "comparison_figure",
    "comparison_grid",
    "comparison_grid_figure",
    "method_rows",
    "skipped_lines",
]


PANEL = (2.3, 2.75)  # inches per panel (width, height)
DPI = 110


def comparison_figure(
    results: Mapping[str, Explanation], i: int, cmap: str = "jet", alpha: float = 0.5
) -> Image.Image:
    """A row of panels for image ``i``: the input, then each method's map over it.

    Each panel has its own colour scale (its colour bar gives the method's raw values), as in the
    comparison figures of the attribution papers: methods differ in units, so one shared scale
    would hide most of them.
    """
    plt = _pyplot()
    first = next(iter(results.values()))
    n = len(results) + 1
    fig, axes = plt.subplots(1, n, figsize=(PANEL[0] * n, PANEL[1]), dpi=DPI, squeeze=False)
    _photo(axes[0][0], first, i, _title(first, i))
    for ax, (name, r) in zip(axes[0][1:], results.items()):
        _panel(fig, ax, name, r, i, cmap, alpha)
    fig.tight_layout()
    return figure_image(fig)


def method_rows(results: Mapping[str, Explanation], per_row: int = 5) -> list[list[str]]:
    """The methods in rows of at most ``per_row``: input-space methods first, then the CAM
    family, each family in rows as even as can be (7 -> 4 + 3), in the given order."""
    families: dict[bool, list[str]] = {}
    for name, r in results.items():
        families.setdefault(r.meta.get("family") == "cam", []).append(name)
    rows = []
    for cam in sorted(families):
        members = families[cam]
        count = -(-len(members) // per_row)
        size, extra = divmod(len(members), count)
        start = 0
        for k in range(count):
            end = start + size + (k < extra)
            rows.append(members[start:end])
            start = end
    return rows


def comparison_grid_figure(
    results: Mapping[str, Explanation],
    i: int,
    cmap: str = "jet",
    alpha: float = 0.5,
    *,
    per_row: int = 5,
    skipped: Mapping[str, str] | None = None,
) -> Any:
    """Every method for image ``i`` in rows (:func:`method_rows`), each row starting with the
    photo, each panel on its own colour scale as in :func:`comparison_figure`; below them the
    methods that were skipped and why (methods skipped for the same reason on one line).
    Returns the matplotlib figure (:func:`comparison_grid` gives the image)."""
    plt = _pyplot()
    rows = method_rows(results, per_row) if results else []
    cols = max((len(r) for r in rows), default=0) + 1
    notes = skipped_lines(skipped or {}, width=int(cols * 26))
    note_h = 0.25 + 0.17 * len(notes) if notes else 0.0
    grid_h = PANEL[1] * len(rows)
    fig = plt.figure(figsize=(PANEL[0] * cols, grid_h + note_h), dpi=DPI, layout="constrained")
    parts = [fig]
    if rows and notes:
        parts = list(fig.subfigures(2, 1, height_ratios=[grid_h, note_h]))
    if rows:
        axes = parts[0].subplots(len(rows), cols, squeeze=False)
        first = next(iter(results.values()))
        for k, members in enumerate(rows):
            cam = results[members[0]].meta.get("family") == "cam"
            label = "(CAM family)" if cam else "(input space)"
            _photo(axes[k][0], first, i, f"{_title(first, i)}\n{label}" if k == 0 else label)
            for c in range(1, cols):
                if c <= len(members):
                    name = members[c - 1]
                    _panel(parts[0], axes[k][c], name, results[name], i, cmap, alpha)
                else:
                    axes[k][c].axis("off")
    if notes:
        box = parts[-1]
        box.text(
            0.005,
            0.98,
            "skipped (cannot apply to this model):",
            fontsize=8,
            fontweight="bold",
            va="top",
        )
        box.text(
            0.005, 0.98 - 0.22 / note_h, "\n".join(notes), fontsize=7.5, va="top", linespacing=1.3
        )
    return fig


def skipped_lines(skipped: Mapping[str, str], width: int = 130) -> list[str]:
    """Lines for the skipped methods: methods skipped for the same reason share one (the reason
    names its method first, as convscope's errors do: that name is left out)."""
    import textwrap

    by_reason: dict[str, list[str]] = {}
    for name, why in skipped.items():
        generic = why[len(name) :].lstrip(" :") if why.startswith(name + " ") else why
        by_reason.setdefault(generic, []).append(name)
    lines = []
    for why, names in by_reason.items():
        lines += textwrap.wrap(f"{', '.join(names)}: {why}", width=width, subsequent_indent="    ")
    return lines


def comparison_grid(
    results: Mapping[str, Explanation],
    i: int,
    cmap: str = "jet",
    alpha: float = 0.5,
    *,
    per_row: int = 5,
    skipped: Mapping[str, str] | None = None,
) -> Image.Image:
    """:func:`comparison_grid_figure` as an image."""
    fig = comparison_grid_figure(results, i, cmap, alpha, per_row=per_row, skipped=skipped)
    return figure_image(fig)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _title(first: Explanation, i: int) -> str:
    title = first.labels[i]
    if first.target_names:
        title += f"\n{first.target_names[i]}"
    return title


def _photo(ax: Any, first: Explanation, i: int, title: str) -> None:
    if first.pixels is not None:
        ax.imshow(first.pixels[i].cpu().numpy())
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _panel(fig: Any, ax: Any, name: str, r: Explanation, i: int, cmap: str, alpha: float) -> None:
    """One method's map over the photo, with a colour bar in the map's raw values."""
    heat = r.normalized()[i].cpu()
    shown = heat.clamp_min(0) if heat.min() >= 0 or r.display_norm == "max" else heat
    if r.pixels is not None:
        ax.imshow(r.pixels[i].cpu().numpy())
    lo, hi = (-1.0, 1.0) if shown.min() < 0 else (0.0, 1.0)
    im = ax.imshow(
        shown.numpy(),
        cmap=cmap if lo == 0 else "coolwarm",
        alpha=alpha if r.pixels is not None else 1.0,
        vmin=lo,
        vmax=hi,
    )
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, ticks=[lo, hi])
    cb.ax.set_yticklabels([f"{v:.2g}" for v in _raw_ticks(r, i, lo, hi)], fontsize=7)
    layer = f"\n@{r.layer}" if r.layer else ""
    ax.set_title(f"{name}{layer}", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _raw_ticks(r: Any, i: int, lo: float, hi: float) -> tuple[float, float]:
    """The raw values of map ``i`` that the display's ``lo`` and ``hi`` stand for (the 99th
    percentile of ``|map|`` for gradient maps, whose display is clipped there)."""
    raw = r.maps[i : i + 1]
    peak = float(display_peak(raw, r.display_norm)[0])
    return lo * peak, hi * peak
