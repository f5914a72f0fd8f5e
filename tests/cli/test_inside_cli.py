"""``convscope filters | activations | stats``: outputs, printed summaries, one-line errors."""

from __future__ import annotations

import csv
import json

import pytest
from PIL import Image

from convscope.cli.main import main


def test_filters_writes_the_first_layer_and_prints_similar_filters(tmp_path, capsys):
    assert main(["filters", "--order", "similarity", "--similar", "0", "-o", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "_conv_stem: 32 filters of 3 x 3 x 3 (groups 1), drawn as rgb" in text
    assert "filter 0: most similar (cosine) " in text and text.count("(+") + text.count("(-") == 5
    img = Image.open(tmp_path / "filters__conv_stem.png")
    assert img.mode == "RGB" and img.width > 200


def test_activations_writes_grids_and_the_strip(tmp_path, capsys):
    out = tmp_path / "a"
    args = [
        "activations",
        "sample:coffee",
        "-l",
        "_blocks.4,_swish@1",
        "--top",
        "8",
        "-o",
        str(out),
    ]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "coffee__blocks.4.png",
        "coffee__swish-at1.png",
        "coffee_pipeline.png",
    ]
    text = capsys.readouterr().out
    assert "_swish@1: 1280 x 7 x 7, 8 strongest by mean of 1280 channels drawn" in text


def test_stats_prints_the_table_and_writes_csv_json_chart(tmp_path, capsys):
    out = tmp_path / "s"
    assert (
        main(["stats", "sample:coffee", "sample:chelsea", "--layers", "blocks", "-o", str(out)])
        == 0
    )
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith("layer") and "_blocks.15" in text
    rows = list(csv.DictReader((out / "stats.csv").open()))
    assert rows[0]["layer"] == "_conv_stem" and rows[0]["shape"] == "32x112x112"
    assert json.loads((out / "stats.json").read_text())[-1]["layer"] == rows[-1]["layer"]
    assert Image.open(out / "stats.png").width > 300


@pytest.mark.parametrize(
    "args,message",
    [
        (["filters", "--layer", "_bn0"], "is a BatchNorm2d and has a 1-D weight"),
        (["filters", "--layer", "_conv_sem"], "did you mean: _conv_stem"),
        (["activations", "sample:coffee", "-l", "_fc"], "not a 4-D (N, C, h, w) feature map"),
        (["activations", "sample:coffee", "--top", "0"], "--top must be at least 1"),
        (["stats", "missing.png"], "no such file: missing.png"),
        (["stats", "sample:coffee", "--layers", "_swish"], "name one call: _swish@0, _swish@1"),
    ],
)
def test_bad_arguments_are_one_line_exit_2_and_write_nothing(args, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*args, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("convscope: error:") and message in err and "\n" not in err
    assert not out.exists()
