"""Filters: hand-set weights drawn as documented, grouped and depthwise layers, similarity and
ordering, the first convolution found by tracing, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convscope
from convscope.errors import ConvscopeError, LayerError
from tests.models import TinyCNN


def _conv(out=2, inp=3, k=2, groups=1, weight=None) -> nn.Sequential:
    model = nn.Sequential(nn.Conv2d(inp, out, k, groups=groups, bias=False), nn.ReLU())
    if weight is not None:
        with torch.no_grad():
            model[0].weight.copy_(weight)
    return model


def test_rgb_filters_are_their_weights_on_one_symmetric_scale():
    w = torch.zeros(2, 3, 2, 2)
    w[0, 0, 0, 0] = 4.0  # red +s
    w[0, 2, 1, 1] = -4.0  # blue -s
    w[1, 1, 0, 1] = 2.0  # green +s/2
    f = convscope.filters(_conv(weight=w), "0")
    assert f.resolve_mode() == "rgb"
    px = f.pixels()
    assert px.shape == (1, 2, 2, 2, 3)
    # pixel = round(127.5 * (1 + w / 4)): 4 -> 255, -4 -> 0, 2 -> round(191.25) = 191, 0 -> 128
    assert px[0, 0, 0, 0].tolist() == [255, 128, 128]
    assert px[0, 0, 1, 1].tolist() == [128, 128, 0]
    assert px[0, 1, 0, 1].tolist() == [128, 191, 128]
    assert px[0, 1, 1, 0].tolist() == [128, 128, 128]
    # per-filter scale: filter 1's own max is 2, so its green weight is white
    assert f.pixels(scale="filter")[0, 1, 0, 1].tolist() == [128, 255, 128]


def test_grid_upscales_by_nearest_neighbour_and_places_filters_in_order():
    w = torch.zeros(2, 3, 2, 2)
    w[0, 0, 0, 0] = 1.0
    w[1, :, 1, 1] = -1.0
    f = convscope.filters(_conv(weight=w), "0")
    img = f.grid(cell=8, cols=2)  # 2x2 kernels x4 -> 8x8 cells, pad 2
    assert img.size == (2 + 2 * 10, 2 + 1 * 10)
    px = img.load()
    assert px[2, 2] == (255, 128, 128) and px[5, 5] == (255, 128, 128)  # filter 0, weight (0, 0)
    assert px[6, 6] == (128, 128, 128)  # filter 0, weight (1, 1) is zero
    assert px[12 + 4, 2 + 4] == (0, 0, 0)  # filter 1, weight (1, 1): -1 in every channel
    # a similarity order moves the cells
    g = f.order("index")
    assert g.indices == (0, 1)
    swapped = type(f)(f.layer, f.weights, f.groups, f.in_channels, (1, 0))
    assert swapped.grid(cell=8, cols=2).load()[2 + 4, 2 + 4] == (0, 0, 0)


def test_mean_and_channels_modes():
    w = torch.tensor([[[[3.0]], [[1.0]]], [[[-1.5]], [[0.0]]]])  # (2 out, 2 in, 1, 1)
    f = convscope.filters(_conv(out=2, inp=2, k=1, weight=w), "0")
    assert f.resolve_mode() == "mean"
    # means: 2 and -0.75; s = 2 -> 255 and round(79.6875) = 80
    assert f.pixels("mean")[0, :, 0, 0, 0].tolist() == [255, 80]
    # channels: row = input channel, column = filter; s = 3 over all weights
    ch = f.pixels("channels")
    assert ch.shape == (2, 2, 1, 1, 3)
    assert ch[:, :, 0, 0, 0].tolist() == [[255, 64], [170, 128]]
    with pytest.raises(ConvscopeError, match="mode 'rgb' needs filters with 3 input channels"):
        f.pixels("rgb")


def test_grouped_and_depthwise_convolutions():
    # groups=2: 4 inputs, 4 outputs; filter o reads the 2 input channels of group o // 2
    w = torch.arange(4 * 2 * 1 * 1, dtype=torch.float32).reshape(4, 2, 1, 1)
    f = convscope.filters(_conv(out=4, inp=4, k=1, groups=2, weight=w), "0")
    assert f.weights.shape == (4, 2, 1, 1) and f.groups == 2 and f.in_channels == 4
    ch = f.pixels("channels")
    assert ch.shape == (2, 4, 1, 1, 3)  # 2 rows: the 2 channels of each filter's group
    s = 7.0
    assert ch[1, 3, 0, 0, 0] == round(127.5 * (1 + w[3, 1, 0, 0].item() / s))
    # depthwise: one channel per filter, drawn in grey even with 3 input channels
    dw = torch.tensor([[[[1.0, -1.0]]], [[[0.5, 0.0]]], [[[0.0, 0.0]]]])
    d = convscope.filters(_conv(out=3, inp=3, k=(1, 2), groups=3, weight=dw), "0")
    assert d.resolve_mode() == "mean"
    px = d.pixels()
    assert px.shape == (1, 3, 1, 2, 3)
    assert px[0, :, 0, :, 0].tolist() == [[255, 0], [191, 128], [128, 128]]


def test_transposed_convolution_is_rearranged_per_output_channel():
    model = nn.Sequential(nn.ConvTranspose2d(4, 6, 1, groups=2, bias=False))
    f = convscope.filters(model, "0")
    w = model[0].weight.detach()  # (in=4, out/groups=3, 1, 1)
    assert f.weights.shape == (6, 2, 1, 1)
    # output 4 is in group 1 (outputs 3-5, inputs 2-3); its weight from input 3 is w[3, 1]
    assert f.weights[4, 1, 0, 0] == w[3, 1, 0, 0]


def test_similar_ranks_by_cosine_and_order_groups_similar_filters():
    base = torch.randn(3, 3, 3, generator=torch.Generator().manual_seed(0))
    other = torch.randn(3, 3, 3, generator=torch.Generator().manual_seed(1))
    w = torch.stack([base, other, 2 * base, -other, base + 0.1 * other, torch.zeros(3, 3, 3)])
    f = convscope.filters(_conv(out=6, k=3, weight=w), "0")
    near = f.similar(0, k=5)
    assert [j for j, _ in near[:2]] == [2, 4]
    assert near[0][1] == pytest.approx(1.0, abs=1e-6)
    assert dict(near)[5] == 0.0  # the all-zero filter
    assert dict(near)[3] == pytest.approx(-dict(near)[1], abs=1e-6)
    # hand value: cos(base, other)
    cos = float(base.flatten() @ other.flatten() / (base.norm() * other.norm()))
    assert dict(near)[1] == pytest.approx(cos, abs=1e-6)
    order = list(f.order("similarity").indices)
    assert sorted(order) == list(range(6))
    pos = {j: order.index(j) for j in range(6)}
    assert max(pos[0], pos[2], pos[4]) - min(pos[0], pos[2], pos[4]) == 2  # adjacent
    assert list(f.order("norm").indices)[0] == 2 and list(f.order("norm").indices)[-1] == 5


def test_first_is_the_first_convolution_the_input_meets():
    class Backwards(nn.Module):
        def __init__(self):
            super().__init__()
            self.late = nn.Conv2d(4, 2, 1)
            self.early = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.late(self.early(x))

    assert convscope.filters(Backwards(), input_shape=(3, 8, 8)).layer == "early"
    tiny = convscope.filters(TinyCNN(), input_shape=(3, 16, 16))
    assert tiny.layer == "conv1" and torch.equal(tiny.weights, TinyCNN().conv1.weight.detach())


def test_tinycnn_reused_and_inplace_modules_do_not_confuse_filters():
    f = convscope.filters(TinyCNN(), "conv2")
    assert f.weights.shape == (8, 8, 3, 3)
    assert f.grid().size[0] > 0 and f.pixels().shape == (1, 8, 3, 3, 3)


def test_lite0_first_layer(lite0):
    f = convscope.filters(lite0)
    assert f.layer == "_conv_stem"
    assert f.weights.shape == (32, 3, 3, 3)
    assert torch.equal(f.weights, lite0.model._conv_stem.weight.detach())
    px = f.pixels()
    s = f.weights.abs().max()
    expected = torch.round(127.5 * (1 + f.weights / s)).to(torch.uint8).permute(0, 2, 3, 1)
    assert torch.equal(px[0], expected)
    img = f.grid(cell=36)
    assert img.size[0] > 8 * 36 and img.mode == "RGB"


def test_bad_input():
    model = _conv()
    with pytest.raises(LayerError, match="'1' is a ReLU and has no weights, not a 2-D convolution"):
        convscope.filters(model, "1")
    with pytest.raises(LayerError, match="unknown layer 'conv'"):
        convscope.filters(TinyCNN(), "conv")
    with pytest.raises(LayerError, match="use convscope.weight_templates"):
        convscope.filters(TinyCNN(), "fc")
    with pytest.raises(LayerError, match="no 2-D convolution"):
        convscope.filters(nn.Sequential(nn.Flatten(), nn.Linear(12, 2)), input_shape=(3, 2, 2))
    f = convscope.filters(model, "0")
    with pytest.raises(LayerError, match="filter 9 out of range"):
        f.similar(9)
    with pytest.raises(LayerError, match=r"filter\(s\) \[5\] out of range"):
        f.grid(filters=[5])
    with pytest.raises(ConvscopeError, match="mode is one of"):
        f.grid(mode="colour")
    with pytest.raises(ConvscopeError, match="order by"):
        f.order("size")


def test_save_writes_a_png(tmp_path):
    from PIL import Image

    f = convscope.filters(TinyCNN(), input_shape=(3, 16, 16))
    path = f.save(tmp_path / "filters.png", cell=12)
    assert Image.open(path).size == f.grid(cell=12).size


def test_first_stops_the_pass_at_the_first_convolution():
    class FailsLater(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 3)
            self.head = nn.Linear(7, 2)

        def forward(self, x):
            return self.head(self.stem(x))  # wrong shapes: only the stem ever runs

    model = FailsLater()
    assert convscope.filters(model, input_shape=(3, 8, 8)).layer == "stem"
    assert not model.stem._forward_hooks
