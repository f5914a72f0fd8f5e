"""``convscope visualize``: one PNG per objective, a layer's grid in one run, one-line errors."""

from __future__ import annotations

import pytest
from PIL import Image

from convscope.cli.main import main
from convscope.cli.visualize import parse_channels


def test_objectives_and_a_layer_grid(tmp_path, capsys):
    out = tmp_path / "vis"
    code = main(
        [
            "visualize", "--objective", "class:flamingo", "--layer", "_blocks.4",
            "--channels", "0-2", "--steps", "2", "--size", "64", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "channel_blocks.4_0.png",
        "channel_blocks.4_1.png",
        "channel_blocks.4_2.png",
        "class_flamingo.png",
        "grid.png",
    ]
    assert Image.open(out / "class_flamingo.png").size == (64, 64)
    text = capsys.readouterr().out
    assert "class:flamingo = " in text and "top-1" in text and "wrote" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--objective", "class:qwertyuiop"], "unknown class 'qwertyuiop'"),
        (["--objective", "channel:_blocks.99:1"], "unknown layer '_blocks.99'"),
        (["--layer", "_blocks.4"], "--layer needs --channels"),
        (["--layer", "_blocks.4", "--channels", "5-2"], "--channels '5-2'"),
        (["--objective", "class:1", "--steps", "0"], "steps must be"),
        (["--objective", "class:1", "--preset", "fooling", "-O", "l2=0.5"], "contradicts"),
        ([], "give at least one --objective"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "vis"
    assert main(["visualize", "--steps", "1", "--size", "32", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_parse_channels():
    assert parse_channels("0-3,8,2") == [0, 1, 2, 3, 8]
