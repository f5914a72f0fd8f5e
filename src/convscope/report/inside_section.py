"""The demo page's "Inside the network" section: the first-layer filters, the pipeline strip for
one photo, the per-layer statistics across depth, and the receptive fields of one unit at three
depths (:func:`convscope.report.rf_section.receptive_field_card`).

Layout only: the numbers and pictures come from :mod:`convscope.inside` and :mod:`convscope.viz`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from convscope.report.page import Card, Figure, Page, Section, table

__all__ = ["inside_section"]


def inside_section(
    page: Page,
    bundle: Any,
    x: Any,
    names: Sequence[str],
    *,
    strip_photo: str | None = None,
    receptive_fields: bool = True,
) -> Section:
    """The section for ``bundle`` on the batch ``x`` (the demo's photos, labelled ``names``).

    ``strip_photo``: the photo of the pipeline strip and of the receptive-field boxes (default
    the first); ``receptive_fields``: add the receptive-field card."""
    import convscope
    from convscope.viz.render import png_bytes

    section = Section(
        "Inside the network",
        "What the layers hold, before any explanation of a decision: the filters of the first "
        "convolution, the feature maps of one photo from the stem to the head, how large, "
        "how many and how sparse the activations are at every layer over the photos above, and "
        "which part of the input a unit sees at three depths.",
    )
    # -- the first layer's filters ----------------------------------------------------------------
    view = convscope.filters(bundle, input_shape=tuple(x.shape[1:]))
    ordered = view.order("similarity")
    grid = ordered.grid(cell=48)
    src = page.add_asset("inside_filters.png", png_bytes(grid))
    out, per, kh, kw = view.weights.shape
    pairs = _most_similar_pairs(view, 3)
    section.cards.append(
        Card(
            title=f"First-layer filters: {view.layer}, {out} x {per} x {kh} x {kw}",
            figures=[
                Figure(src, "similar filters side by side", width=f"{min(grid.width, 420)}px")
            ],
            body_html=_note(
                f"The first convolution the input meets ({view.layer}, found by tracing a forward "
                "pass), each filter's R, G and B weights drawn as one colour pixel, all on one "
                "symmetric scale: mid-grey is 0, white or a saturated colour a large weight "
                f"({float(view.weights.abs().max()):.2f} at most). Ordered by hierarchical "
                "clustering of their cosine similarity. Most alike: "
                + ", ".join(f"{i} and {j} ({c:+.2f})" for i, j, c in pairs)
                + "."
            ),
        )
    )
    # -- the pipeline for one photo ---------------------------------------------------------------
    k = names.index(strip_photo) if strip_photo in names else 0
    acts = convscope.activations(bundle, x[k : k + 1])
    strip = acts.strip(0)
    src = page.add_asset(f"inside_pipeline_{names[k]}.png", png_bytes(strip))
    shapes = ", ".join("x".join(str(v) for v in acts[n].shape[1:]) for n in acts.layers)
    section.cards.append(
        Card(
            title=f"{names[k]}: the pipeline from stem to head",
            figures=[Figure(src, "click for full size", width="100%", link=True)],
            body_html=_note(
                f"The stages {', '.join(acts.layers)} ({shapes}), each block filled with as many "
                "of its channels as fit, strongest first by mean activation, each map at its real "
                "resolution (one pixel per unit): early maps are large and few, later ones small "
                "and many. Grey: 0 black, the layer's largest value white (rectified layers); "
                "red-blue: positive red, negative blue (layers with negative values)."
            ),
            wide=True,
        )
    )
    # -- statistics across depth ------------------------------------------------------------------
    stats = convscope.layer_stats(bundle, x)
    chart = stats.chart(f"{bundle.name}, {x.shape[0]} photos: every 4-D layer in forward order")
    src = page.add_asset("inside_stats.png", png_bytes(chart))
    rows = [r for r in stats.rows if r.rectified]
    first, last = (rows[0], rows[-1]) if rows else (None, None)
    signed = [r.nonpositive for r in stats.rows if not r.rectified]
    summary = (
        f"Rectified layers (red dots) go from {first.zero:.0%} zeros at {first.layer} to "
        f"{last.zero:.0%} at {last.layer}; layers with negative values (blue circles) stay near "
        f"{sum(signed) / len(signed):.0%} at or below zero. "
        if first is not None and last is not None and signed
        else ""
    )
    section.cards.append(
        Card(
            title="Size and sparsity across depth",
            figures=[Figure(src, "activations per image (bars) and sparsity (dots)", width="100%")],
            body_html=_note(
                summary
                + f"Activations per image fall from {stats.rows[0].count:,} at {stats.rows[0].layer} "
                f"to {min(r.count for r in stats.rows if r.shape[1] * r.shape[2] > 1):,} at 7 x 7. "
                "The lecture notes' 'information distillation pipeline' (early activations large "
                "and few, later ones small, numerous and sparse), measured on this network."
            )
            + _stats_table(stats),
            wide=True,
        )
    )
    # -- receptive fields ----------------------------------------------------------------------------
    if receptive_fields:
        from convscope.report.rf_section import receptive_field_card

        section.cards.append(receptive_field_card(page, bundle, x, names[k], photo=k))
    return section


def _most_similar_pairs(view: Any, k: int) -> list[tuple[int, int, float]]:
    cos = view.cosine()
    n = cos.shape[0]
    pairs = [(i, j, float(cos[i, j])) for i in range(n) for j in range(i + 1, n)]
    return sorted(pairs, key=lambda p: -p[2])[:k]


def _stats_table(stats: Any) -> str:
    """The rectified layers' rows (the chart has every layer)."""
    rows = [
        [
            r.layer,
            "x".join(str(v) for v in r.shape),
            f"{r.count:,}",
            f"{r.zero:.0%}",
            f"{r.dead:.0%}",
            f"{r.active_per_position:.0f} of {r.channels}",
        ]
        for r in stats.rows
        if r.rectified
    ]
    return (
        "<details><summary>the rectified layers</summary>"
        + table(
            ["layer", "shape", "per image", "exactly 0", "dead channels", "active per position"],
            rows,
            numeric={2, 3, 4, 5},
        )
        + "</details>"
    )


def _note(text: str) -> str:
    import html

    return f"<p class='note'>{html.escape(text)}</p>"
