"""Activations: raw maps through the recorder (reused and in-place modules), grids and the strip
drawn on the documented scales, the pipeline's stages, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convscope
from convscope.errors import ConvscopeError, LayerError
from convscope.inside.activations import pipeline_layers
from convscope.viz.activations import feature_cells
from tests.models import TinyCNN, tiny_input


def test_raw_maps_equal_a_hand_forward_on_tinycnn():
    """TinyCNN reuses ``act`` and runs an in-place ReLU after conv2: each call's map is its own."""
    model, x = TinyCNN(), tiny_input(3)
    a = convscope.activations(model, x, ["act@0", "conv2", "act@1", "relu6"])
    with torch.no_grad():
        h1 = torch.relu(model.conv1(x))
        c2 = model.conv2(h1)
        h2 = torch.relu(c2)
        h3 = torch.clamp(model.conv3(h2), 0, 6)
    assert a.layers == ["act@0", "conv2", "act@1", "relu6"]
    torch.testing.assert_close(a["act@0"], h1)
    torch.testing.assert_close(a["conv2"], c2)  # not rectified by the in-place ReLU after it
    assert (a["conv2"] < 0).any()
    torch.testing.assert_close(a["act@1"], h2)
    torch.testing.assert_close(a["relu6"], h3)
    torch.testing.assert_close(a.output, model(x))


def test_batches_give_the_same_maps():
    model, x = TinyCNN(), tiny_input(5)
    whole = convscope.activations(model, x, ["conv3"])
    parts = convscope.activations(model, x, ["conv3"], batch_size=2)
    torch.testing.assert_close(whole["conv3"], parts["conv3"], atol=1e-4, rtol=1e-4)


def test_pipeline_stages_of_tinycnn_and_a_sequential():
    assert pipeline_layers(TinyCNN(), tiny_input(1)) == ["act@0", "relu6"]
    seq = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 8, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
    )
    # the stem (last call with conv 0's shape), then the last map at each resolution
    assert pipeline_layers(seq, tiny_input(1)) == ["1", "5"]
    # activations() finds the same stages during its own pass (no trace), in any batch size
    for model, stages in ((seq, ["1", "5"]), (TinyCNN(), ["act@0", "relu6"])):
        a = convscope.activations(model, tiny_input(3), batch_size=2)
        assert a.layers == stages
        b = convscope.activations(model, tiny_input(3), stages)
        for name in stages:
            torch.testing.assert_close(a[name], b[name], atol=1e-4, rtol=1e-4)


def test_pipeline_stages_of_lite0(lite0):
    x = torch.zeros(1, 3, 224, 224)
    stages = pipeline_layers(lite0.model, x)
    assert stages == ["_swish@0", "_blocks.0", "_blocks.2", "_blocks.4", "_blocks.10", "_swish@1"]


def test_feature_cells_follow_the_documented_rule():
    positive = torch.tensor([[[0.0, 2.0]], [[1.0, 4.0]]])  # (2, 1, 2), no negative value
    gray = feature_cells(positive)  # v / 4 through "gray": 0 black, 4 white
    assert gray[1, 0, 1].tolist() == [255, 255, 255] and gray[0, 0, 0].tolist() == [0, 0, 0]
    assert gray[0, 0, 1, 0] == 128  # 2/4 -> lut index round(0.5 * 255) = 128
    # per channel: channel 0's own max is 2, so its 2 is white
    assert feature_cells(positive, "channel")[0, 0, 1].tolist() == [255, 255, 255]
    signed = torch.tensor([[[-2.0, 0.0, 2.0]]])  # diverging: -s blue end, 0 middle, +s red end
    cells = feature_cells(signed)
    from convscope.viz.render import colorize

    assert cells[0, 0, 0].tolist() == colorize(torch.tensor(0.0), "RdBu_r").tolist()
    assert cells[0, 0, 1].tolist() == colorize(torch.tensor(0.5), "RdBu_r").tolist()
    assert cells[0, 0, 2].tolist() == colorize(torch.tensor(1.0), "RdBu_r").tolist()


def test_channel_order_and_grid():
    model, x = TinyCNN(), tiny_input(2)
    a = convscope.activations(model, x, ["relu6"])
    m = a["relu6"][1]
    means = m.mean(dim=(1, 2))
    order = a.channel_order(1, "relu6", "mean")
    assert order == sorted(range(16), key=lambda c: (-float(means[c]), c))
    maxes = m.amax(dim=(1, 2))
    assert (
        a.channel_order(1, "relu6", "max", top=3)
        == sorted(range(16), key=lambda c: (-float(maxes[c]), c))[:3]
    )
    assert a.channel_order(0, "relu6", None) == list(range(16))
    img = a.grid(1, "relu6", top=4, cell=16, cols=4)
    assert img.mode == "RGB" and img.height > 16
    chosen = a.grid(0, "relu6", channels=[3, 1])
    assert chosen.width < a.grid(0, "relu6").width


def test_strip_fills_blocks_by_real_resolution():
    model, x = TinyCNN(), tiny_input(1)
    a = convscope.activations(model, x)  # act@0: 8 x 16 x 16, relu6: 16 x 8 x 8
    strip = a.strip(0, side=32)  # factor 1: 4 maps of 16 x 16 and all 16 of 8 x 8 fit
    assert strip.height >= 32 and strip.width >= 3 * 32


def test_lite0_head_maps(lite0):
    a = convscope.activations(lite0, ["sample:coffee"], ["_swish@1", "_blocks.15"])
    assert a["_swish@1"].shape == (1, 1280, 7, 7)
    assert a["_blocks.15"].shape == (1, 320, 7, 7)
    assert float(a["_swish@1"].min()) >= 0 and float(a["_swish@1"].max()) <= 6
    assert a.labels == ["coffee"] and a.pixels.shape == (1, 224, 224, 3)


def test_save_writes_grids_and_strips(tmp_path):
    a = convscope.activations(TinyCNN(), tiny_input(2), ["act@0", "relu6"])
    paths = a.save(tmp_path / "acts", top=4)
    names = sorted(p.rsplit("/", 1)[1] for p in paths)
    assert names == [
        "image0_act-at0.png",
        "image0_pipeline.png",
        "image0_relu6.png",
        "image1_act-at0.png",
        "image1_pipeline.png",
        "image1_relu6.png",
    ]


def test_bad_input():
    model = TinyCNN()
    with pytest.raises(LayerError, match="unknown layer 'conv'"):
        convscope.activations(model, tiny_input(1), ["conv"])
    with pytest.raises(LayerError, match=r"'fc' outputs shape \(1, 5\), not a 4-D"):
        convscope.activations(model, tiny_input(1), ["fc"])
    with pytest.raises(LayerError, match="runs 2 times in one forward pass"):
        convscope.activations(model, tiny_input(1), ["act"])
    with pytest.raises(ConvscopeError, match="no images given"):
        convscope.activations(model, torch.zeros(0, 3, 16, 16), ["conv1"])
    with pytest.raises(ConvscopeError, match="no images given|empty"):
        convscope.activations(model, [], ["conv1"])
    a = convscope.activations(model, tiny_input(1), ["conv1"])
    with pytest.raises(LayerError, match="was not recorded"):
        a.grid(0, "conv2")
    with pytest.raises(LayerError, match=r"channel\(s\) \[8\] out of range"):
        a.grid(0, "conv1", channels=[8])
    with pytest.raises(ConvscopeError, match="out of range: 1 image"):
        a.grid(3, "conv1")
    with pytest.raises(ConvscopeError, match="sort is"):
        a.grid(0, "conv1", sort="median")
