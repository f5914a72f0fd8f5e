"""The demo page's link to a small microscope site (:mod:`convscope.report.site`), built from the
dataset section's single pass over its corpus (its top-k and pooled features are reused, so the
site costs no new pass over the corpus): one layer, a few units, no image pages or feature
visualizations. ``convscope site`` builds the full one."""

from __future__ import annotations

import html
import time
from typing import Any

from convscope.report.page import Page, Section

__all__ = ["SITE_UNITS", "site_section"]

SITE_UNITS = 6  # unit pages of the demo's site (the strongest units of the middle mined layer)


def site_section(page: Page, bundle: Any, kept: dict[str, Any]) -> Section:
    """Build the small site into ``page``'s files under ``site/`` and return the section that
    links to it. ``kept``: what :func:`~convscope.report.corpus_section.corpus_section` kept
    (``survey``, ``corpus``)."""
    from convscope.report.site import build_site

    s, corpus = kept["survey"], kept["corpus"]
    names = list(s.top.layers)
    layer = names[len(names) // 2]
    start = time.perf_counter()
    r = build_site(
        bundle,
        None,
        corpus=corpus,
        layers=[layer],
        units=SITE_UNITS,
        images=0,
        k=s.top[layer].k,
        methods=(),
        featurevis_steps=0,
        feature_layer=s.feature_layer,
        embedding_method="pca",
        stats_images=0,
        maps=False,
        layer_table=False,
        progress=False,
        top=s.top,
        features=(s.features, s.valid, s.top1),
    )
    for path, data in r.files.items():
        page.assets[f"site/{path}"] = data
    took = time.perf_counter() - start
    e = html.escape
    return Section(
        "Microscope",
        "A static site with a page for the model, a layer, each of its units and the corpus's "
        "embedding map, searchable offline; here a small one from the dataset section's pass.",
        body_html=(
            f"<p><a href='site/index.html'>Open the microscope site</a>: {e(layer)}, its "
            f"{SITE_UNITS} strongest units over {e(corpus.name)}, {r.pages} pages, "
            f"{r.bytes / 1e6:.1f} MB, built in {took:.1f} s. <code>convscope site --corpus "
            "FOLDER --out DIR</code> builds one for every layer, unit and image, with feature "
            "visualizations and attribution maps.</p>"
        ),
    )
