"""The demo page: its four sections (predictions, every method side by side, the sanity check,
feature visualization), built cheaply (two photos, a few methods), and the page builder it grows from."""

from __future__ import annotations

import html
import io
import re

import pytest
from PIL import Image

import convscope
from convscope.report.demo import (
    DEMO_OPTIONS,
    METHOD_ORDER,
    PER_ROW,
    TOO_SLOW,
    _chunks,
    build_demo,
)
from convscope.report.page import Card, Figure, Page, Section, table

PHOTOS = ["coffee", "chelsea"]
METHODS = ["saliency", "integrated_gradients", "gradcam", "gradcam++", "cam", "scorecam"]
SANITY = ("gradcam", "guided_backprop", "saliency")
RHO = re.compile(r"ρ = ([+-]\d\.\d\d)$")


@pytest.fixture(scope="module")
def page() -> Page:
    # CAMs at _blocks.15: cam cannot apply there (skipped, with the library's reason); scorecam has
    # no layer of its own in `layers`, so it is left out as too slow; gradcam++ runs at its own.
    return build_demo(
        samples=PHOTOS,
        methods=METHODS,
        options={"integrated_gradients": {"steps": 2}},
        layers={"gradcam++": ("_blocks.14", "a test of a method's own layer")},
        layer="_blocks.15",
        sanity_methods=SANITY,
        sanity_checkpoints=3,
        shapes=False,
        corpus=None,  # the dataset section has its own test (test_corpus_section.py)
        featurevis=FEATUREVIS,
        progress=False,
    )


FEATUREVIS = {
    "size": 32,
    "steps": 2,
    "yosinski_steps": 2,
    "fooling_steps": 2,
    "channels": 3,
    "layer": "_blocks.4",
}


def section(page: Page, start: str) -> Section:
    (s,) = [s for s in page.sections if s.title.startswith(start)]
    return s


def png(page: Page, src: str) -> Image.Image:
    return Image.open(io.BytesIO(page.assets[src]))


def test_five_sections_and_every_figure_is_an_asset(page):
    assert [s.title.split(":")[0] for s in page.sections] == [
        "Predictions and where they come from",
        "Every method side by side",
        "Sanity check",
        "Inside the network",
        "What excites the network",
    ]
    srcs = {f.src for s in page.sections for c in s.cards for f in c.figures}
    assert srcs == set(page.assets)
    text = page.render()
    for src in page.assets:  # every asset is shown (none written for nothing)
        assert f"src='{src}'" in text
    files = page.files()
    assert files["index.html"].decode().count("<section>") == 5
    assert re.search(r"Made by convscope \S+ in [\d.]+ s \(methods [\d.]+ s", page.footer)


def test_predictions_section_is_unchanged(page):
    s = section(page, "Predictions")
    assert [c.title.split(":")[0] for c in s.cards] == PHOTOS
    assert "espresso" in s.cards[0].title
    for name, card in zip(PHOTOS, s.cards):
        assert [f.src for f in card.figures] == [
            f"img/{name}.png",
            f"img/{name}_gradcam.png",
            f"img/{name}_saliency.png",
        ]
        assert "<table class='bars'>" in card.body_html


def test_comparison_rows_have_one_panel_per_method(page):
    s = section(page, "Every method")
    shown = ["saliency", "integrated_gradients", "gradcam", "gradcam++"]
    assert len(s.cards) == len(PHOTOS)
    for name, card in zip(PHOTOS, s.cards):
        assert card.wide and card.title.startswith(f"{name}: {len(shown)} methods for '")
        captions = [f.caption for f in card.figures]
        assert captions == ["input space (pixel resolution)", "CAM family (layer resolution)"]
        per_row = [2, 2]  # saliency, integrated_gradients | gradcam, gradcam++
        for k, f in zip(per_row, card.figures):
            assert f.src.startswith(f"img/{name}_compare_") and f.link
            w, h = png(page, f.src).size
            # comparison_figure: the input and one 2.3 x 2.75 inch panel per method
            assert w / h == pytest.approx((k + 1) * 2.3 / 2.75, rel=0.02)
            assert f.width == f"{100 * (k + 1) / (PER_ROW + 1):.1f}%"  # one scale for all rows


def test_comparison_table_states_options_layers_times_and_what_was_not_shown(page):
    s = section(page, "Every method")
    rows = re.findall(r"<tr>(.*?)</tr>", s.body_html)
    cells = {
        r[0]: r
        for r in (
            [html.unescape(c) for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row)]
            for row in rows[1:]
        )
    }
    assert list(cells) == METHODS
    for m in ["saliency", "integrated_gradients", "gradcam", "gradcam++"]:
        assert cells[m][5] == "shown" and float(cells[m][4]) >= 0
    assert cells["saliency"][2] == "input" and cells["gradcam"][2] == "_blocks.15"
    assert cells["gradcam++"][2] == "_blocks.14"
    assert "steps=2 (default 50)" in cells["integrated_gradients"][3]
    # cam cannot apply at _blocks.15: the library's reason; scorecam: left out, with why
    assert cells["cam"][5].startswith("skipped: cam needs a network that ends in global average")
    assert cells["cam"][4] != ""  # it was tried
    assert cells["scorecam"][5] == "left out: " + TOO_SLOW["scorecam"]
    assert cells["scorecam"][4] == ""  # never run
    assert "Not shown: cam, scorecam (see the table)." in s.intro
    assert "integrated_gradients takes 16 Gauss-Legendre steps" not in s.intro
    assert "integrated_gradients runs with steps=2" in s.intro
    assert "gradcam++ runs at layer _blocks.14 (a test of a method's own layer)" in s.intro


def test_sanity_section_shows_the_cascade_with_spearman_under_each_map(page):
    from convscope.api import prepare_inputs
    from convscope.core.layer_listing import parametric_layers

    s = section(page, "Sanity check")
    assert [c.title.split(" ")[0] for c in s.cards[:-1]] == list(SANITY)
    assert "chelsea" in s.intro
    bundle = convscope.load_model("efficientnet_lite0")
    x = prepare_inputs(bundle, "sample:chelsea")[0]
    order = parametric_layers(bundle.model, x)
    rhos = {}
    for m, card in zip(SANITY, s.cards):
        assert card.wide and card.strip
        assert card.figures[0].caption == "input\nchelsea"
        stages = [f.caption.split("\n")[0] for f in card.figures[1:]]
        # original, then three checkpoints from the top layer down to the first, top down
        assert stages[0] == "original" and len(stages) == 4
        assert stages[1] == order[0] == "_fc" and stages[-1] == "_conv_stem"
        assert order.index(stages[1]) < order.index(stages[2]) < order.index(stages[3])
        values = [float(RHO.search(f.caption.split("\n")[1]).group(1)) for f in card.figures[1:]]
        assert all(-1 <= v <= 1 for v in values)
        assert values[0] == 1.0  # the original map, recomputed on the unrandomized copy
        rhos[m] = values
        for f in card.figures:
            assert png(page, f.src).size == (224, 224)
    # the point of the section: guided backprop barely notices a random classifier, Grad-CAM does
    assert rhos["guided_backprop"][1] > 0.9 > rhos["gradcam"][1]
    assert rhos["gradcam"][-1] < 0.5
    summary = s.cards[-1]
    assert summary.figures[0].src == "img/sanity_chelsea_rho.png"
    table_rows = re.findall(r"<tr>(.*?)</tr>", summary.body_html)[1:]
    assert len(table_rows) == 4
    for row, stage in zip(table_rows, stages):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        assert cells[1] == stage
        got = [float(c) for c in cells[2:]]
        assert got == pytest.approx([rhos[m][stages.index(stage)] for m in SANITY], abs=0.006)


def test_no_sanity_section_without_its_photo():
    page = build_demo(
        samples=["coffee"],
        methods=["gradcam"],
        sanity_sample="chelsea",
        shapes=False,
        corpus=None,
        featurevis=False,
        receptive_fields=False,
        inside=False,
        progress=False,
    )
    assert [s.title for s in page.sections][-1] == "Every method side by side"


def test_inside_section_shows_filters_the_pipeline_and_statistics(page):
    s = section(page, "Inside the network")
    titles = [c.title for c in s.cards]
    assert titles == [
        "First-layer filters: _conv_stem, 32 x 3 x 3 x 3",
        "coffee: the pipeline from stem to head",
        "Size and sparsity across depth",
        "Receptive fields: the centre unit at three depths (coffee)",
    ]
    assert not [t for t in page.sections if t.title == "Receptive fields"]  # one place for C3
    filters, strip, stats, _ = (c.figures[0].src for c in s.cards)
    assert filters == "img/inside_filters.png" and strip == "img/inside_pipeline_coffee.png"
    wide = png(page, strip)
    assert wide.width > 4 * wide.height  # input + 6 stages side by side
    assert png(page, stats).width > 600
    body = s.cards[2].body_html
    assert "_swish@1" in body and "Rectified layers (red dots) go from" in body
    assert "_blocks.0, _blocks.2, _blocks.4, _blocks.10, _swish@1" in s.cards[1].body_html


def test_featurevis_section_shows_classes_yosinski_fooling_and_channels(page):
    s = section(page, "What excites the network")
    assert "32 x 32 pixels" in s.intro and "only 2 steps" in s.intro  # the page says it is cheap
    titles = [c.title for c in s.cards]
    # the two photos' top classes (espresso, and the cat's), deduplicated, in one card
    assert titles[0] == "The photos' top classes (lucid)"
    assert "espresso" in s.cards[0].figures[0].caption
    assert all(re.search(r"p = \d+%", f.caption) for f in s.cards[0].figures)
    assert titles[1] == "espresso: Yosinski et al.'s four priors"
    assert len(s.cards[1].figures) == 4
    assert titles[2] == "Fooling: school bus" and "top-1: " in s.cards[2].figures[0].caption
    assert titles[3].startswith("Channels 0-2 of _blocks.4") and len(s.cards[3].figures) == 3
    for card in s.cards:
        for f in card.figures:
            assert png(page, f.src).size == (32, 32)


def test_unknown_method_fails_before_any_work():
    with pytest.raises(convscope.MethodError, match="did you mean: gradcam"):
        build_demo(samples=["coffee"], methods=["gradcan"], progress=False)
    with pytest.raises(convscope.MethodError, match="did you mean: saliency"):
        build_demo(samples=["coffee"], methods=["gradcam"], sanity_methods=["salincy"])


def test_demo_defaults_fit_the_registry_and_the_model(lite0):
    registered = convscope.methods()
    assert set(METHOD_ORDER) <= set(registered)
    for m, options in DEMO_OPTIONS.items():
        assert set(options) <= set(convscope.method_info(m).options), m
    for m, (layer, why) in lite0.meta["cheaper_layers"].items():
        assert m in registered and why
        convscope.resolve_layer(lite0.model, layer)
    # the default demo shows every method: the slow ones have a cheaper layer for this model
    assert set(TOO_SLOW) <= set(lite0.meta["cheaper_layers"])


@pytest.mark.parametrize(
    "n, sizes", [(1, [1]), (5, [5]), (6, [3, 3]), (7, [4, 3]), (9, [5, 4]), (11, [4, 4, 3])]
)
def test_chunks_are_even_rows(n, sizes):
    items = [str(i) for i in range(n)]
    rows = _chunks(items, 5)
    assert [len(r) for r in rows] == sizes and sum(rows, []) == items


def test_page_builder_figures_cards_and_tables():
    p = Page("t")
    a = p.add_asset("a.png", b"x")
    with pytest.raises(ValueError, match="added twice"):
        p.add_asset("a.png", b"y")
    p.sections.append(
        Section(
            "S",
            "intro <b>",
            cards=[
                Card("plain", [Figure(a, "cap")]),
                Card("wide", [Figure(a, "two\nlines", width="50%", link=True)], wide=True),
                Card("strip", [Figure(a, "s", width="118px")], wide=True, strip=True),
                Card("text only", body_html="<p>hi</p>"),
            ],
            body_html=table(["k", "v"], [["<x>", 0.5], ["y", 2]], numeric={1}),
        )
    )
    text = p.render()
    assert "<p>intro &lt;b&gt;</p>" in text
    assert "<figure><img src='img/a.png' alt='cap'><figcaption>cap</figcaption></figure>" in text
    assert (
        "<figure class='sized' style='width:50%'><a href='img/a.png'><img src='img/a.png' "
        "alt='two lines'></a><figcaption>two<br>lines</figcaption></figure>" in text
    )
    assert "<div class='card wide'><h3>wide</h3><div class='figs'>" in text
    assert "<div class='card wide'><h3>strip</h3><div class='figs strip'>" in text
    assert "<div class='card'><h3>text only</h3><p>hi</p></div>" in text
    assert "<td>&lt;x&gt;</td><td class='num'>0.50</td>" in text
    assert "<td>y</td><td class='num'>2</td>" in text


def test_receptive_field_card_shows_boxes_and_effective_fields(page):
    card = section(page, "Inside the network").cards[-1]
    assert card.title == "Receptive fields: the centre unit at three depths (coffee)"
    assert [f.src for f in card.figures] == [
        "img/rf_boxes_coffee.png",
        "img/rf_erf__blocks.2.png",
        "img/rf_erf__blocks.5.png",
        "img/rf_erf__blocks.8.png",
    ]
    assert png(page, card.figures[0].src).size == (448, 466)  # 2x, and the legend band
    assert card.body_html.count(">100 %<") == 3  # no gradient outside the exact boxes
