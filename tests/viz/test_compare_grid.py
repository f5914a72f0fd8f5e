"""The comparison figure of many methods: rows (input space first, then the CAM family), each
starting with the photo, and the skipped methods with their reasons in the figure itself."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import convscope
from convscope.viz.compare import (
    DPI,
    PANEL,
    comparison_grid,
    comparison_grid_figure,
    method_rows,
    skipped_lines,
)
from tests.models import TinyCNN, tiny_input


def fake(family: str) -> SimpleNamespace:
    return SimpleNamespace(meta={"family": family})


def test_rows_by_family_as_even_as_can_be():
    results = {f"g{k}": fake("gradient") for k in range(7)}
    results.update({f"c{k}": fake("cam") for k in range(9)})
    results["g7"] = fake("gradient")  # order within a family is kept, families are grouped
    rows = method_rows(results, per_row=5)
    assert [len(r) for r in rows] == [4, 4, 5, 4]
    assert rows[0] == ["g0", "g1", "g2", "g3"] and rows[1][-1] == "g7"
    assert rows[2][0] == "c0"
    assert method_rows({"a": fake("cam")}, per_row=5) == [["a"]]


def test_skipped_methods_with_the_same_reason_share_a_line():
    skipped = {
        "gradcam": "gradcam needs hooks on the model's layers, which TorchScript models lack",
        "cam": "cam needs hooks on the model's layers, which TorchScript models lack",
        "deconvnet": "the model has no rectifier",
    }
    lines = skipped_lines(skipped, width=200)
    assert lines == [
        "gradcam, cam: needs hooks on the model's layers, which TorchScript models lack",
        "deconvnet: the model has no rectifier",
    ]


@pytest.fixture(scope="module")
def tiny_results():
    model = TinyCNN()
    return convscope.compare(
        model, tiny_input(1), ["saliency", "gradcam", "layercam", "cam"]
    ).explanations


def test_grid_layout_and_the_skipped_note(tiny_results):
    fig = comparison_grid_figure(tiny_results, 0, per_row=2, skipped={"occlusion": "a reason"})
    texts = [t.get_text() for sub in fig.subfigs for t in sub.texts]
    assert "skipped (cannot apply to this model):" in texts and "occlusion: a reason" in texts
    titles = [ax.get_title() for ax in fig.subfigs[0].axes if ax.get_title()]
    # rows of at most 2: [saliency], then the 3 CAMs as [gradcam, layercam], [cam]
    assert titles.count("(CAM family)") == 2 and titles[0] == "image0\nclass 4\n(input space)"
    assert [t.split("\n")[0] for t in titles if not t.startswith(("(", "image0"))] == [
        "saliency",
        "gradcam",
        "layercam",
        "cam",
    ]
    img = comparison_grid(tiny_results, 0, per_row=5)
    assert img.size == (round(PANEL[0] * 4 * DPI), round(PANEL[1] * 2 * DPI))  # 2 rows, 3+1 cols
