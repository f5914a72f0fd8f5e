"""Effective receptive fields (Luo et al. 2016), by hand on all-ones convolutions, and the
``convscope rf`` command."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

import convscope
from convscope.cli.main import main
from tests.models import TinyCNN, tiny_input


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def ones_net(layers: int) -> nn.Sequential:
    """``layers`` 3x3 convolutions with all-ones weights (3 -> 1 -> 1 ... channels), padding 1."""
    convs = [nn.Conv2d(3 if k == 0 else 1, 1, 3, padding=1, bias=False) for k in range(layers)]
    for c in convs:
        nn.init.ones_(c.weight)
    return nn.Sequential(*convs)


def test_two_ones_convolutions_by_hand():
    """Paths from input pixel (y, x) to the centre unit of two 3x3 all-ones layers:
    (3 - |dy|)(3 - |dx|) for |dy|, |dx| <= 2, times 3 colour channels; zero outside the 5x5 box.
    The gradient does not depend on the images, so the mean over them is the same."""
    erf = convscope.effective_receptive_field(ones_net(2), tiny_input(3, size=11), "1")
    tri = torch.tensor([1.0, 2, 3, 2, 1])
    want = torch.zeros(11, 11)
    want[3:8, 3:8] = 3 * tri[:, None] * tri[None, :]
    assert erf.position == (5, 5) and erf.box == (3, 3, 8, 8) and erf.images == 3
    assert torch.equal(erf.map, want)
    assert erf.inside_box() == 1.0
    assert erf.radius(1.0) == pytest.approx(2 * 2**0.5)
    assert erf.radius(0.01) == 0.0  # the centre pixel alone holds 27 / 243 of the mass


def test_a_position_and_a_neuron_and_a_corner():
    """At the corner unit (0, 0) the box is clipped: the 2x2 window left of padding, all ones."""
    erf = convscope.effective_receptive_field(
        ones_net(1), tiny_input(2, size=8), "0", position=(0, 0)
    )
    want = torch.zeros(8, 8)
    want[:2, :2] = 3.0
    assert erf.box == (0, 0, 2, 2) and torch.equal(erf.map, want)
    neuron = convscope.effective_receptive_field(ones_net(1), tiny_input(2, size=8), "0:0:0:0")
    assert torch.equal(neuron.map, want)
    picture = erf.image(size=64)
    assert isinstance(picture, Image.Image) and picture.size == (64, 64)


def test_real_weights_stay_inside_the_exact_box():
    model = TinyCNN()
    erf = convscope.effective_receptive_field(model, tiny_input(4), "conv3:2")
    assert erf.box == convscope.receptive_field(model, "conv3", 16).box(4, 4)
    t, left, b, r = erf.box
    outside = erf.map.clone()
    outside[t:b, left:r] = 0
    assert erf.map[t:b, left:r].min() > 0 and outside.abs().max() == 0


def test_bad_input():
    model, x = TinyCNN(), tiny_input(2)
    with pytest.raises(convscope.LayerError, match=r"fc outputs shape \(2, 5\)"):
        convscope.effective_receptive_field(model, x, "fc")
    with pytest.raises(convscope.LayerError, match=r"position \(8, 0\) is outside the 8x8 map"):
        convscope.effective_receptive_field(model, x, "conv2", position=(8, 0))
    with pytest.raises(convscope.ConvscopeError, match="has a position already"):
        convscope.effective_receptive_field(model, x, "conv2:0:1:1", position=(1, 1))
    with pytest.raises(convscope.LayerError, match="channel 9 is out of range"):
        convscope.effective_receptive_field(model, x, "conv2:9")
    with pytest.raises(convscope.ImageError, match="empty"):
        convscope.effective_receptive_field(model, x[:0], "conv2")


def test_cli_prints_the_geometry_and_a_box(capsys):
    assert main(["rf", "--layer", "_blocks.4", "--unit", "3,20"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        "_blocks.4: 28x28 map on a 224x224 input; size 67x67, stride 8x8, offset (-26, -26)"
    )
    # rows -26 + 3*8 = -2 -> 0 .. 41 -> 65; columns -26 + 160 = 134 .. 201
    assert out[1] == "unit (3, 20): rows 0-64, columns 134-200 (box 0, 134, 65, 201)"


def test_cli_writes_pictures_and_refuses_bad_units(tmp_path, capsys):
    out = tmp_path / "rf"
    assert main(["rf", "sample:coffee", "--layer", "_blocks.2", "--erf", "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["erf.png", "rf.png"]
    assert Image.open(out / "rf.png").size[0] == 448
    assert "100.0% inside the box" in capsys.readouterr().out
    bad = tmp_path / "bad"
    assert main(["rf", "--layer", "_blocks.4", "--unit", "3,40", "-o", str(bad)]) == 2
    assert "outside the 28x28 map" in capsys.readouterr().err and not bad.exists()
    assert main(["rf", "--layer", "_blocks.4", "--unit", "x"]) == 2
    assert main(["rf", "--layer", "_blocks.44"]) == 2
    assert "did you mean" in capsys.readouterr().err


def test_inside_inference_mode():
    model = ones_net(1)
    with torch.inference_mode():
        erf = convscope.effective_receptive_field(model, tiny_input(1, size=8), "0")
    assert erf.map.sum() == 27.0
