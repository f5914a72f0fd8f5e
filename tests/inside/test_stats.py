"""Per-layer statistics: every number by hand on a tiny model, streaming over batches, the layers
chosen by default, the table/CSV/JSON/chart, bad input."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import convscope
from convscope.errors import ConvscopeError, LayerError
from convscope.inside.stats import stat_layers
from tests.models import TinyCNN, tiny_input


class Hand(nn.Module):
    """x -> conv (1x1, hand weights) -> relu: statistics computable by hand."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 1, bias=False)
        self.relu = nn.ReLU()
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -1.0, 0.0]).view(3, 1, 1, 1))

    def forward(self, x):
        return self.relu(self.conv(x))


def test_statistics_by_hand():
    # two 1-channel 2x2 images: values 1, -2, 0, 3 and 4, 0, -1, 0
    x = torch.tensor([[1.0, -2.0], [0.0, 3.0], [4.0, 0.0], [-1.0, 0.0]]).reshape(2, 1, 2, 2)
    st = convscope.layer_stats(Hand(), x, ["conv", "relu"], batch_size=1)
    conv, relu = st["conv"], st["relu"]
    # conv: channel 0 = x, channel 1 = -x, channel 2 = 0 -> 24 values
    assert conv.shape == (3, 2, 2) and conv.count == 12 and conv.images == 2
    assert conv.mean == pytest.approx(0.0)
    assert conv.max == 4.0
    zeros = 3 + 3 + 8  # x has 3 zeros, -x 3, channel 2 all 8
    assert conv.zero == pytest.approx(zeros / 24)
    positives = 3 + 2  # x > 0: 1, 3, 4; -x > 0: 2, 1
    assert conv.nonpositive == pytest.approx(1 - positives / 24)
    assert not conv.rectified
    assert conv.dead == pytest.approx(1 / 3)  # channel 2 is never > 0
    assert conv.active_per_position == pytest.approx(positives / (2 * 4))
    # relu: the negatives become zeros
    assert relu.rectified and relu.zero == pytest.approx(1 - positives / 24)
    assert relu.mean == pytest.approx((1 + 3 + 4 + 2 + 1) / 24)
    assert relu.nonpositive == relu.zero


def test_batches_stream_to_the_same_statistics():
    model, x = TinyCNN(), tiny_input(7)
    whole = convscope.layer_stats(model, x, batch_size=7)
    parts = convscope.layer_stats(model, x, batch_size=3)
    assert [r.layer for r in whole.rows] == [r.layer for r in parts.rows]
    for a, b in zip(whole.rows, parts.rows):
        assert a.count == b.count and a.zero == b.zero and a.dead == b.dead
        assert a.mean == pytest.approx(b.mean, rel=1e-5, abs=1e-6)
        assert a.active_per_position == b.active_per_position


def test_reused_and_inplace_layers_are_measured_per_call():
    """conv2's output is rectified in place by relu_inplace afterwards: its statistics are taken
    before that, so it still has negative values; act runs twice and gets a row per call."""
    model, x = TinyCNN(), tiny_input(4)
    st = convscope.layer_stats(model, x)
    names = [r.layer for r in st.rows]
    assert names == [
        "conv1", "act@0", "conv2", "relu_inplace", "act@1", "conv3", "relu6", "pool",
    ]  # fmt: skip
    with torch.no_grad():
        c2 = model.conv2(torch.relu(model.conv1(x)))
    assert not st["conv2"].rectified
    assert st["conv2"].nonpositive == pytest.approx(float((c2 <= 0).float().mean()))
    assert st["relu_inplace"].zero == pytest.approx(float((c2 <= 0).float().mean()))
    assert st["conv2"].mean == pytest.approx(float(c2.mean()), rel=1e-5)


def test_default_layers_skip_pass_through_modules():
    model = nn.Sequential(
        nn.ZeroPad2d(1), nn.Conv2d(3, 4, 3), nn.Identity(), nn.Dropout(0.2), nn.ReLU()
    )
    assert [c.spec for c in stat_layers(model, tiny_input(1))] == ["1", "4"]


def test_lite0_statistics(lite0):
    st = convscope.layer_stats(lite0, ["sample:coffee", "sample:chelsea"], "blocks")
    assert st.rows[0].layer == "_conv_stem" and st["_conv_stem"].shape == (32, 112, 112)
    head = st["_swish@1"]
    assert head.rectified and head.shape == (1280, 7, 7) and head.max <= 6
    assert 0 < head.zero < 1


def test_table_csv_json_and_chart(tmp_path):
    st = convscope.layer_stats(TinyCNN(), tiny_input(3))
    text = st.table()
    assert text.splitlines()[0].startswith("layer") and "relu6" in text
    rows = json.loads(st.to_json())
    assert (
        rows[0]["layer"] == "conv1" and rows[0]["shape"] == "8x16x16" and rows[0]["count"] == 2048
    )
    csv_lines = st.to_csv().splitlines()
    assert csv_lines[0].startswith("layer,type,shape,count,mean,max,zero,nonpositive")
    assert len(csv_lines) == 1 + len(st)
    paths = st.save(tmp_path / "s")
    assert sorted(p.rsplit("/", 1)[1] for p in paths) == ["stats.csv", "stats.json", "stats.png"]


def test_bad_input():
    model = TinyCNN()
    with pytest.raises(LayerError, match="unknown layer 'conv'"):
        convscope.layer_stats(model, tiny_input(1), ["conv"])
    with pytest.raises(LayerError, match=r"'fc' outputs shape \(1, 5\), not a 4-D"):
        convscope.layer_stats(model, tiny_input(1), ["fc"])
    with pytest.raises(LayerError, match="runs 2 times in one forward pass"):
        convscope.layer_stats(model, tiny_input(1), ["act"])
    with pytest.raises(ConvscopeError, match="no images given"):
        convscope.layer_stats(model, torch.zeros(0, 3, 16, 16))
    with pytest.raises(ConvscopeError, match="batch_size must be at least 1"):
        convscope.layer_stats(model, tiny_input(1), batch_size=0)
    with pytest.raises(LayerError, match="unknown layer 'every'"):
        convscope.layer_stats(model, tiny_input(1), "every")
    with pytest.raises(ConvscopeError, match="layers is 'all', 'blocks'"):
        stat_layers(model, tiny_input(1), "every")
