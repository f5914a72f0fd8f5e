"""The demo page's dataset section on the tiny model: it says which corpus it used, and each
figure is what it claims (cards per unit, the neighbours of the queries, a grid map)."""

from __future__ import annotations

import io

from PIL import Image

from convscope.report.corpus_section import corpus_section
from convscope.report.page import Page
from tests.models import tiny_bundle


def test_section_says_what_it_used_and_has_its_figures():
    page = Page("t")
    s = corpus_section(
        page,
        tiny_bundle(32),
        corpus="samples-crops:24",
        layers=["conv1", "conv3"],
        feature_layer="conv3",
        queries=["coffee", "chelsea"],
        units=2,
        k=4,
    )
    assert s.title == "What the dataset says"
    assert "samples-crops:24" in s.intro and "24 seeded crops" in s.intro
    titles = [c.title for c in s.cards]
    assert titles[0] == "conv1: top-4 patches of 2 of its 8 units"
    assert titles[1] == "conv3: top-4 patches of 2 of its 16 units"
    assert (
        titles[2].startswith("Unit conv3:")
        and "guided backpropagation" in s.cards[2].figures[0].caption
    )
    guided = Image.open(io.BytesIO(page.assets["img/corpus_guided.png"]))
    assert guided.width == 3 * (2 * 64 + 2 + 3) + 3  # 3 hits per row, each a patch and its gradient
    assert titles[3].startswith("Where unit conv3:") and len(s.cards[3].figures) == 4
    assert "3 x 3-pixel patch" in s.cards[0].body_html  # conv1's receptive field
    nb = Image.open(io.BytesIO(page.assets["img/corpus_neighbours.png"]))
    assert nb.height > 2 * 80 and nb.width > 7 * 80  # 2 queries, each with 6 neighbours
    tsne = Image.open(io.BytesIO(page.assets["img/corpus_tsne.png"]))
    assert tsne.width == 5 * (40 + 6)  # 24 crops on a 5 x 5 grid of framed 40-pixel cells
    assert "This section took" in s.body_html
