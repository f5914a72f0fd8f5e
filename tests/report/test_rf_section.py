"""The demo's receptive-field card (report/rf_section.py)."""

from __future__ import annotations

import pytest
import torch

import convscope
from convscope.report.page import Page
from convscope.report.rf_section import RF_LAYERS, receptive_field_card


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_card_shows_boxes_at_three_depths_and_their_effective_fields(lite0):
    page = Page("t")
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    card = receptive_field_card(page, lite0, x, "noise")
    layers = RF_LAYERS["efficientnet_lite0"]
    assert len(card.figures) == 4 and all(f.src in page.files() for f in card.figures)
    for layer in layers:
        rf = convscope.receptive_field(lite0, layer, 224)
        assert f"<td>{layer}</td>" in card.body_html
        assert f"{rf.size[0]} x {rf.size[1]}" in card.body_html
    # the exact boxes are the whole story of where the gradient can be: 100 % inside
    assert card.body_html.count(">100 %<") == 3
