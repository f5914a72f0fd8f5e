"""Arguments are checked before any work: a bad one is one line, exit 2, and nothing written."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from PIL import Image

from convscope.cli.explain import parse_methods
from convscope.cli.main import main
from convscope.core.registry import methods as registered


@pytest.mark.parametrize(
    "args,message",
    [
        (["--top", "-1"], "--top must be 0 or more"),
        (["--cmap", "nonexistent"], "unknown colormap 'nonexistent'"),
        (["--cmap", "vridis"], "did you mean: viridis"),
        (["--method", "saliency", "--layer", "nonexistent"], "not used by saliency"),
        (["--method", "saliency", "--layer", "_blocks.3"], "the methods that take a layer are"),
        (["--method", "gradcam", "--layer", "nonexistent"], "unknown layer 'nonexistent'"),
        (["--method", ","], "--method is empty"),
        (["--max-pixels", "0"], "--max-pixels must be at least 1"),
    ],
)
def test_bad_arguments_exit_2_before_any_work(tmp_path, capsys, args, message):
    out = tmp_path / "never"
    assert main(["explain", "sample:coffee", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("convscope: error:") and message in err, err
    assert len(err.splitlines()) == 1
    assert not out.exists()


def test_method_lists():
    assert parse_methods("gradcam") == (["gradcam"], False)
    assert parse_methods("gradcam,gradcam") == (["gradcam"], False)
    assert parse_methods(" GradCAM, saliency ,gradcam,") == (["gradcam", "saliency"], False)
    assert parse_methods("all") == (registered(), True)
    assert parse_methods("all,saliency") == (registered(), True)
    assert parse_methods("saliency,ALL") == (registered(), True)
    from convscope.cli.evaluate import _methods  # evaluate --methods reads the same way

    assert _methods("gradcam,all") == (registered(), True)
    assert _methods("saliency,saliency") == (["saliency"], False)


def test_a_repeated_method_is_run_once(tmp_path, capsys):
    assert (
        main(["explain", "sample:coffee", "--method", "gradcam,gradcam", "-o", str(tmp_path)]) == 0
    )
    assert "coffee: gradcam for 'espresso'" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coffee_gradcam.png"]


def test_top_zero_prints_no_predictions(tmp_path, capsys):
    assert main(["explain", "sample:coffee", "--top", "0", "-o", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "coffee: gradcam for 'espresso'" in text and "1. " not in text


def test_max_pixels_flag_lets_a_large_image_through(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 60_000)  # restored after the test
    big = tmp_path / "big.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)).save(big)
    out = tmp_path / "out"
    assert main(["explain", str(big), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "90000 pixels" in err and "--max-pixels N" in err and not out.exists()
    old = os.umask(0o022)
    try:
        assert main(["explain", str(big), "--max-pixels", "100000", "-o", str(out)]) == 0
    finally:
        os.umask(old)
    # readable by others, as any file written with this umask (not mkstemp's 0600)
    assert stat.S_IMODE(os.stat(out / "big_gradcam.png").st_mode) == 0o644


def test_class_names_matched_by_a_word_are_announced(tmp_path, capsys):
    assert main(["explain", "sample:chelsea", "-t", "Persian", "-o", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "convscope: note: class name 'Persian' taken as class 283 'Persian cat'" in captured.err
    assert "gradcam for 'Persian cat'" in captured.out
    assert main(["explain", "sample:chelsea", "-t", "dog", "-o", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err
    assert "'dog' is ambiguous, it matches 153: Maltese dog" in err and "dogsled" not in err
