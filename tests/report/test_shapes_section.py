"""The demo's "Shapes world" section: built from the shipped weights and measurements, every
figure an asset, the numbers those of report.json."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from convscope.report.page import Page
from convscope.report.shapes_section import load_report, shapes_section


@pytest.fixture(scope="module")
def built():
    page = Page(title="t")
    section = shapes_section(page, n_samples=4)
    page.sections.append(section)
    return page, section


def test_cards_figures_and_numbers(built):
    page, section = built
    titles = [c.title for c in section.cards]
    assert titles[0].startswith("Samples") and titles[-1] == "Attribution against the truth"
    assert any("first-layer filters" in t for t in titles)
    assert any("Softmax regression" in t for t in titles) and any("MLP" in t for t in titles)
    assert any("Multi-task" in t for t in titles)
    for card in section.cards:
        for fig in card.figures:
            Image.open(io.BytesIO(page.assets[fig.src])).verify()
    report = load_report()
    html = page.render()
    corr = report["correlations"]["softmax-regression"]["triangle"]["centred"]
    assert f"{corr:.2f}" in html
    filt = report["filters"]["trained"]["oriented_fraction"]
    assert f"{filt:.0%} trained" in html
    # the filter figure: 16 cells of 11 x 11 weights upscaled 4x, 8 per row, with captions
    src = section.cards[1].figures[0].src
    assert Image.open(io.BytesIO(page.assets[src])).size == (
        3 + 8 * (44 + 3),
        3 + 2 * (44 + 3 + 12),
    )
