"""Receptive fields: hand-computed values, and every box against the gradient probe (the support of
one unit's input gradient on a copy with linear rectifiers and positive weights)."""

from __future__ import annotations

import pytest
import torch

import convscope
from convscope.inside.receptive_field import receptive_field, receptive_fields
from tests.inside.rf_models import (
    BranchyNet,
    ChannelsLastNet,
    ResampleNet,
    gradient_boxes,
    linear_positive_copy,
)
from tests.models import TinyCNN


@pytest.fixture(autouse=True)
def one_thread():
    """Many small kernels: on a shared, loaded machine two OpenMP threads wait on each other
    (a Lite0 probe took 85 s with two threads, 0.13 s with one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_tiny_cnn_by_hand():
    """conv1 3x3 pad 1; conv2 3x3 stride 2 pad 1; conv3 3x3 pad 1 (tests/models.py), 16x16 input.
    Sizes 3, 3 + 2*1 = 5, 5 + 2*2 = 9; strides 1, 2, 2; offsets -1, -1 - 1 = -2, -2 - 1*2 = -4."""
    rfs = receptive_fields(TinyCNN(), ["conv1", "conv2", "conv3", "act@1", "relu6"], 16)
    assert [(r.size, r.stride, r.offset) for r in rfs.values()] == [
        ((3, 3), (1, 1), (-1, -1)),
        ((5, 5), (2, 2), (-2, -2)),
        ((9, 9), (2, 2), (-4, -4)),
        ((5, 5), (2, 2), (-2, -2)),  # the reused ReLU's second call sits after conv2
        ((9, 9), (2, 2), (-4, -4)),
    ]
    conv3 = rfs["conv3"]
    assert conv3.map_size == (8, 8)
    assert conv3.box(0, 0) == (0, 0, 5, 5)  # [-4, 5) clipped
    assert conv3.box(3, 5) == (2, 6, 11, 15)  # rows -4 + 6 = 2 .. 11, cols -4 + 10 = 6 .. 15
    assert conv3.box(7, 7) == (10, 10, 16, 16)  # [10, 19) clipped to 16
    assert rfs["conv1"].box(15, 0) == (14, 0, 16, 2)


def _all_units_match_probe(model, size, labels, channels_last=()):
    probe = linear_positive_copy(model)
    rfs = receptive_fields(model, labels, size)
    for label, rf in rfs.items():
        name, _, call = label.partition("@")
        h, w = rf.map_size
        units = [(i, j) for i in range(h) for j in range(w)]
        want = gradient_boxes(probe, name, size, units, int(call or 0), label in channels_last)
        assert [rf.box(i, j) for i, j in units] == want, label
    return rfs


def test_branched_network_every_unit_matches_the_gradient_probe():
    """Residual additions, a strided shortcut, a concatenation of a dilated convolution and a max
    pool, a depthwise convolution, a ceil-mode pool, reflect padding, a reused module: every unit
    of every layer, on an odd, non-square input."""
    labels = ["stem", "act@0", "a2", "down", "short", "dil", "pool", "act@2", "dw", "pool2", "refl"]
    rfs = _all_units_match_probe(BranchyNet(), (29, 23), labels)
    # the two branches meet with one stride: the union of their boxes is regular
    assert (rfs["down"].size, rfs["short"].size) == ((17, 17), (13, 13))
    assert rfs["down"].offset == (-8, -8) and rfs["down"].stride == (4, 4)
    assert rfs["act@2"].size == (33, 33)  # the dilated branch is the wider of the two
    assert all(r.exact for r in rfs.values())


def test_resampling_network_matches_the_probe_and_says_it_is_irregular():
    rfs = _all_units_match_probe(ResampleNet(), (17, 15), ["c1", "bins", "up", "c2"])
    assert rfs["c1"].regular and rfs["c1"].size == (3, 3)
    bins = rfs["bins"]
    assert not bins.regular and "uneven bins" in bins.irregular
    with pytest.raises(convscope.LayerError, match="no single receptive-field size.*uneven bins"):
        _ = bins.size
    assert "transposed" in rfs["up"].irregular


def test_channels_last_linear_layers_are_followed_exactly():
    """Linear layers on (N, H, W, C) maps run as a reshape to pixel rows, a matrix product and a
    reshape back: each pixel stays its own row, so the fields stay per position."""
    rfs = _all_units_match_probe(ChannelsLastNet(), (22, 18), ["dw", "fc2", "down"], ["fc2"])
    assert rfs["fc2"].map_size == (11, 9)  # an (N, H, W, C) map
    # stem 2x2/2, depthwise 7x7 pad 3 (size 2 + 6*2 = 14, offset -6), down 2x2/2 (+2: 16, stride 4)
    assert rfs["down"].size == (16, 16) and rfs["down"].stride == (4, 4)
    assert rfs["down"].offset == (-6, -6) and rfs["down"].exact


def test_lite0_matches_the_probe_at_several_depths(lite0):
    size = (64, 80)
    probe = linear_positive_copy(lite0.model)
    layers = ["_conv_stem", "_swish@0", "_blocks.1", "_blocks.4", "_blocks.6"]
    rfs = receptive_fields(lite0, layers, size)
    for label, rf in rfs.items():
        name, _, call = label.partition("@")
        h, w = rf.map_size
        units = [(0, 0), (h - 1, w - 1), (h // 2, w // 3), (1, w - 2), (h - 2, 1)]
        want = gradient_boxes(probe, name, size, units, int(call or 0))
        assert [rf.box(i, j) for i, j in units] == want, label
    # the classic arithmetic, by hand: stem 3x3/2 (TF "same": no top padding at an even size),
    # then block 1's depthwise 3x3/2 after block 0's 3x3/1: 3 + 2*2 + 2*2 = 11, stride 4
    assert rfs["_conv_stem"].size == (3, 3) and rfs["_conv_stem"].offset == (0, 0)
    assert rfs["_blocks.1"].size == (11, 11) and rfs["_blocks.1"].stride == (4, 4)


def test_every_lite0_layer_in_one_pass(lite0):
    rfs = receptive_fields(lite0, "all", 128)
    head = rfs["_swish@1"]
    assert head.map_size == (4, 4) and head.stride == (32, 32)
    assert head.box(3, 3) == (0, 0, 128, 128)
    assert "_blocks.15" in rfs and "_fc" not in rfs  # 2-D outputs have no positions
    assert receptive_field(lite0, "_blocks.4", 128).box(5, 6) == rfs["_blocks.4"].box(5, 6)


def test_boxes_is_box_vectorized():
    rf = receptive_field(BranchyNet(), "dil", (29, 23))
    h, w = rf.map_size
    grid = rf.boxes()
    assert grid.shape == (h, w, 4)
    pos = torch.tensor([[i, j] for i in range(h) for j in range(w)])
    flat = rf.boxes(pos)
    assert flat.dtype == torch.long
    assert flat.tolist() == [list(rf.box(i, j)) for i, j in pos.tolist()]
    assert torch.equal(grid.reshape(-1, 4), flat)
    assert rf.boxes([]).shape == (0, 4)


def test_bad_input():
    model = TinyCNN()
    rf = receptive_field(model, "conv2", 16)
    with pytest.raises(convscope.LayerError, match=r"unit \(8, 0\) is outside the 8x8 map"):
        rf.box(8, 0)
    with pytest.raises(convscope.LayerError, match="outside"):
        rf.box(-1, 0)
    with pytest.raises(convscope.LayerError, match=r"unit \(0, 9\) \(position 1\) is outside"):
        rf.boxes([[0, 0], [0, 9]])
    with pytest.raises(convscope.LayerError, match="integer rows and columns"):
        rf.boxes(torch.zeros(3, 2))
    with pytest.raises(convscope.LayerError, match="did you mean: conv2"):
        receptive_field(model, "conv22", 16)
    with pytest.raises(convscope.LayerError, match=r"'fc'|fc outputs shape \(1, 5\)"):
        receptive_field(model, "fc", 16)
    with pytest.raises(convscope.LayerError, match="runs 2 times.*act@0, act@1"):
        receptive_field(model, "act", 16)
    with pytest.raises(convscope.ConvscopeError, match="input_size is"):
        receptive_field(model, "conv2", (16, 0))
    with pytest.raises(convscope.ConvscopeError, match="does not run on a"):
        receptive_field(model, "conv2", 16, channels=5)


def test_a_changed_architecture_is_traced_again():
    """Fields are kept per model and input size; changing a module's setting is seen."""
    model = TinyCNN()
    assert receptive_field(model, "conv3", 16).size == (9, 9)
    model.conv1.dilation = (2, 2)  # a 3x3 kernel now spans 5 pixels
    model.conv1.padding = (2, 2)
    assert receptive_field(model, "conv3", 16).size == (11, 11)
    assert receptive_field(model, "conv3", 20).map_size == (10, 10)
