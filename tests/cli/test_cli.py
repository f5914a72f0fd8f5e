"""The command line: outputs, exit codes, one-line errors, nothing half-written, fast --help."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from convscope.cli.main import main


def run(*args: str) -> int:
    return main(list(args))


def test_help_does_not_import_torch():
    code = "import sys; from convscope.cli.main import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    out = subprocess.run(
        [sys.executable, "-m", "convscope.cli.main", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "explain" in out.stdout and "demo" in out.stdout


def test_explain_writes_overlays_raw_maps_and_prints_predictions(tmp_path, capsys):
    out = tmp_path / "out"
    assert run("explain", "sample:coffee", "sample:chelsea", "--out", str(out), "--raw") == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "chelsea_gradcam.npy",
        "chelsea_gradcam.png",
        "coffee_gradcam.npy",
        "coffee_gradcam.png",
    ]
    raw = np.load(out / "coffee_gradcam.npy")
    assert raw.dtype == np.float32 and raw.shape == (224, 224) and raw.max() > 0
    assert Image.open(out / "coffee_gradcam.png").size == (224, 224)
    text = capsys.readouterr().out
    assert "1. espresso" in text and "%" in text and text.count("  5. ") == 2


def test_explain_saliency_with_named_target(tmp_path, capsys):
    assert (
        run("explain", "sample:coffee", "--method", "saliency", "-t", "cup", "-o", str(tmp_path))
        == 0
    )
    assert "saliency for 'cup'" in capsys.readouterr().out
    assert (tmp_path / "coffee_saliency.png").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["missing.png"], "no such file: missing.png"),
        (["sample:coffee", "--model", "resnet9000"], "unknown model 'resnet9000'"),
        (["sample:coffee", "--layer", "_swish"], "name one call: _swish@0, _swish@1"),
        (["sample:coffee", "--layer", "_fc"], "not a 4-D"),
        (["sample:coffee", "--target", "crane"], "ambiguous"),
        (["sample:coffee", "--target", "1000"], "out of range"),
        (["sample:coffee", "--method", "gradcan"], "did you mean: gradcam"),
        (["sample:coffee", "-t", "cup", "-t", "tabby"], "2 --target values for 1 images"),
    ],
)
def test_errors_are_one_line_nonzero_and_write_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "never"
    assert run("explain", *args, "--out", str(out)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("convscope: error:") and message in err
    assert len(err.splitlines()) == 1
    assert not out.exists()


def test_corrupt_image_among_good_ones_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0not really a jpeg")
    out = tmp_path / "out"
    assert run("explain", "sample:coffee", str(bad), "--out", str(out)) == 2
    assert "bad.jpg" in capsys.readouterr().err
    assert not out.exists()


def test_debug_shows_the_traceback():
    with pytest.raises(Exception, match="no such file"):
        run("--debug", "explain", "missing.png")


def test_listings(capsys):
    assert run("models") == 0
    assert "efficientnet_lite0" in capsys.readouterr().out
    assert run("methods") == 0
    text = capsys.readouterr().out
    assert "gradcam" in text and "saliency" in text
    assert run("samples") == 0
    text = capsys.readouterr().out
    for name in ("chelsea", "coffee", "astronaut", "rocket", "china", "flower"):
        assert f"sample:{name}" in text


def test_layers_table(capsys):
    assert run("layers", "--model", "efficientnet_lite0") == 0
    text = capsys.readouterr().out
    assert "_swish@1" in text and "1x1280x7x7" in text and "1,281,000" in text
    assert "default CAM layer: _swish@1" in text


def test_demo_builds_a_page(tmp_path, capsys, monkeypatch):
    """The command writes the page; the full demo (every method, about a minute on 2 CPU cores)
    is cut down here to a few cheap methods and sanity-check stages (tests/report/test_demo.py
    tests the sections in detail)."""
    import functools

    import convscope.report.demo as demo

    cheap = functools.partial(
        demo.build_demo,
        methods=["gradcam", "saliency", "cam", "eigencam"],
        sanity_methods=["gradcam", "saliency"],
        sanity_checkpoints=2,
        featurevis=False,  # its section is tested in tests/report/test_demo.py
    )
    monkeypatch.setattr(demo, "build_demo", cheap)
    out = tmp_path / "demo"
    assert run("demo", "--out", str(out)) == 0
    assert capsys.readouterr().out.strip().endswith("index.html")
    page = (out / "index.html").read_text()
    for name in ("coffee", "chelsea", "astronaut", "rocket"):
        assert f"img/{name}_gradcam.png" in page and (out / "img" / f"{name}_saliency.png").exists()
        # every method side by side: one row of input-space and one of CAM methods per photo
        for row, methods in enumerate([1, 3]):
            with Image.open(out / "img" / f"{name}_compare_{row}.png") as im:
                w, h = im.size
            assert w / h == pytest.approx((methods + 1) * 2.3 / 2.75, rel=0.02)
    assert "espresso" in page
    assert "Every method side by side" in page and "No method was skipped." in page
    assert "Sanity check" in page and (out / "img" / "sanity_chelsea_rho.png").exists()
    assert page.count("original<br>ρ = +1.00") == 2  # the original map of each method checked
