from __future__ import annotations

import subprocess
import sys

import matplotlib
import numpy as np
import pytest
import torch

from convscope.viz.render import colorize, overlay


def test_colorize_uses_the_matplotlib_colormap():
    heat = torch.tensor([[0.0, 0.5], [0.25, 1.0]])
    got = colorize(heat, "viridis").numpy()
    cm = matplotlib.colormaps["viridis"]
    for (i, j), v in np.ndenumerate(heat.numpy()):
        expected = np.round(np.array(cm(round(v * 255) / 255)[:3]) * 255)
        np.testing.assert_allclose(got[i, j], expected, atol=1)


def test_the_built_in_jet_is_matplotlibs():
    """The default colormap is drawn without importing matplotlib: its table must be matplotlib's
    jet, entry for entry."""
    from convscope.viz.render import _lut

    _lut.cache_clear()
    expected = (matplotlib.colormaps["jet"](np.linspace(0, 1, 256))[:, :3] * 255).round()
    np.testing.assert_array_equal(_lut("jet").numpy(), expected.astype(np.uint8))
    heat = torch.linspace(0, 1, 1001).view(7, 143)
    np.testing.assert_array_equal(
        colorize(heat, "jet").numpy(), expected.astype(np.uint8)[(heat * 255).round().long()]
    )


def test_rendering_an_overlay_in_jet_does_not_import_matplotlib():
    code = (
        "import sys, torch; from convscope.viz.render import overlay; "
        "overlay(torch.zeros(4, 4, 3, dtype=torch.uint8), torch.rand(4, 4)); "
        "print('matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_overlay_blends_by_alpha():
    pixels = torch.full((2, 2, 3), 100, dtype=torch.uint8)
    heat = torch.zeros(2, 2)
    colour = colorize(heat, "gray")  # black
    assert colour.sum() == 0
    out = overlay(pixels, heat, "gray", alpha=0.25)
    assert torch.equal(out, torch.full((2, 2, 3), 75, dtype=torch.uint8))
    with pytest.raises(ValueError, match="differ in size"):
        overlay(pixels, torch.zeros(3, 3))


def test_comparison_colour_bar_gives_the_raw_value_shown_as_the_top_colour():
    """Gradient maps are shown clipped at their 99th percentile: the bar's top tick is that
    value, not the maximum; CAM maps are shown divided by their maximum."""
    from convscope.result import Explanation
    from convscope.viz.compare import _raw_ticks

    maps = torch.arange(100.0).reshape(1, 10, 10)
    maps[0, 0, 0] = 1000.0  # one extreme pixel
    for method, family, top in [
        ("saliency", "gradient", float(torch.quantile(maps.abs().flatten(), 0.99))),
        ("gradcam", "cam", 1000.0),
    ]:
        r = Explanation(
            maps=maps,
            raw_maps=maps,
            method=method,
            layer=None,
            targets=[0],
            target_names=["x"],
            scores=torch.zeros(1),
            output=None,
            pixels=None,
            labels=["x"],
            meta={"family": family},
        )
        assert r.display_norm == ("p99" if family == "gradient" else "max")
        lo, hi = _raw_ticks(r, 0, 0.0, 1.0)
        assert lo == 0.0 and hi == pytest.approx(top)


def test_figure_image_is_the_figure_at_its_dpi_and_closes_it():
    import matplotlib.pyplot as plt

    from convscope.viz.render import figure_image

    fig, ax = plt.subplots(figsize=(2.0, 1.0), dpi=50)
    ax.imshow(np.zeros((4, 4)), cmap="gray", vmin=0, vmax=1)
    im = figure_image(fig)
    assert im.size == (100, 50) and im.mode == "RGB"
    assert not plt.fignum_exists(fig.number)
