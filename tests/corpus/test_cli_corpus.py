"""The corpus commands in-process: mine, neighbours, embed; bad arguments exit 2 with one line."""

from __future__ import annotations

import json

import pytest
from PIL import Image

import convscope
from convscope.cli.main import main

TINY = "tests.models:tiny_bundle"


def test_mine_writes_result_log_and_summary(folder, tmp_path, capsys):
    (folder / "b/img01.png").write_bytes(b"junk")
    out = tmp_path / "m"
    code = main(
        [
            "mine",
            str(folder),
            "--model",
            TINY,
            "--layer",
            "conv3",
            "--k",
            "3",
            "--out",
            str(out),
            "--workers",
            "0",
            "--no-progress",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "mined the top 3 of conv3 (16 channels) over 31 images" in text
    assert "skipped 1 image(s)" in text and "mine.log" in text
    assert "b/img01.png" in (out / "mine.log").read_text()
    meta = json.loads((out / "topk.json").read_text())
    assert meta["format"] == "convscope-topk/1" and meta["layers"]["conv3"]["shape"][0] == 16
    assert convscope.load_top_units(out).values.shape == (16, 3)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--layer", "fc"], "not a 4-D"),
        (["--layer", "nope"], "nope"),
        (["--layer", "conv3", "--k", "0"], "k must be"),
        (["--layer", "conv3", "--model", "tests.models:missing"], "cannot import model factory"),
    ],
)
def test_mine_bad_input_is_one_line_and_exit_2(folder, tmp_path, capsys, argv, message):
    code = main(
        [
            "mine",
            str(folder),
            "--model",
            TINY,
            "--out",
            str(tmp_path / "o"),
            "--workers",
            "0",
            "--no-progress",
            *argv,
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        code == 2 and len(err) == 1 and err[0].startswith("convscope: error:") and message in err[0]
    )
    assert not (tmp_path / "o" / "topk.json").exists()


def test_mine_refuses_an_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["mine", str(tmp_path / "empty"), "--layer", "conv3", "--model", TINY]) == 2
    assert "holds no image files" in capsys.readouterr().err


def test_neighbours_and_embed_commands(folder, tmp_path, capsys):
    q = folder / "z07.png"
    code = main(
        [
            "neighbours",
            str(q),
            "--corpus",
            str(folder),
            "--layer",
            "conv3",
            "--model",
            TINY,
            "--k",
            "3",
            "--out",
            str(tmp_path / "nb.png"),
            "--cache",
            str(tmp_path / "c"),
            "--workers",
            "0",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "z07: (cosine similarity)" in text and "[23] z07.png" in text.splitlines()[1]
    assert Image.open(tmp_path / "nb.png").size[0] > 3 * 80
    code = main(
        [
            "embed",
            str(folder),
            "--layer",
            "conv3",
            "--model",
            TINY,
            "--method",
            "pca",
            "--colour-by-class",
            "--out",
            str(tmp_path / "map.png"),
            "--cell",
            "16",
            "--cache",
            str(tmp_path / "c"),
            "--workers",
            "0",
        ]
    )
    assert code == 0 and "embedded 32 images" in capsys.readouterr().out
    im = Image.open(tmp_path / "map.png")
    assert im.width == 6 * (16 + 6)  # ceil(sqrt(32)) = 6 columns of framed thumbnails


def test_a_failed_rank_is_summarized_in_one_line():
    from convscope.corpus.launch import summarize_failure

    own = "noise\nconvscope: error (rank 1): checkpoint x is from another run (layers: ...)\nmore\n"
    assert summarize_failure(own, 2, 1) == (
        "rank 1 of 2 failed: checkpoint x is from another run (layers: ...)"
    )
    root = (
        "Root Cause (first observed failure):\n[0]:\n  time      : 2026-12-04\n"
        "  rank      : 0 (local_rank: 0)\n  exitcode  : 1 (pid: 12)\n"
    )
    assert summarize_failure(root, 2, 1).startswith("rank 0 of 2 exited with code 1;")
    assert summarize_failure("", 2, 3) == "torchrun failed with exit code 3: no output"
