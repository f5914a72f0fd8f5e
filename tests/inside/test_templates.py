"""Weight templates: hand-set weights, the drawing rule, the hidden-to-output figure, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convscope
from convscope.errors import LayerError, ModelError


def _mlp(hidden: int = 3, outputs: int = 2, shape=(3, 2, 2)) -> nn.Sequential:
    d = shape[0] * shape[1] * shape[2]
    return nn.Sequential(nn.Flatten(), nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, outputs))


def test_templates_are_weight_rows_reshaped_to_the_image():
    model = _mlp()
    w = torch.arange(3 * 12, dtype=torch.float32).reshape(3, 12) - 17
    with torch.no_grad():
        model[1].weight.copy_(w)
    v = convscope.weight_templates(model, "1", (3, 2, 2))
    assert v.layer == "1"
    assert v.templates.shape == (3, 3, 2, 2)
    # unit 1, channel 2 (blue), row 1, column 0 is flat index 2*4 + 1*2 + 0 = 10 of row 1
    assert v.templates[1, 2, 1, 0] == w[1, 10]
    assert torch.equal(v.bias, model[1].bias.detach())
    # a copy: changing it leaves the model alone
    v.templates.zero_()
    assert model[1].weight[0, 0] == -17


def test_first_finds_the_first_linear_layer_by_tracing():
    class Backwards(nn.Module):  # defined in the other order than they run
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(4, 2)
            self.body = nn.Linear(12, 4)

        def forward(self, x):
            return self.head(torch.relu(self.body(x.flatten(1))))

    v = convscope.weight_templates(Backwards(), "first", (3, 2, 2))
    assert v.layer == "body" and v.templates.shape == (4, 3, 2, 2)


def test_pixels_follow_the_documented_rule():
    """pixel = round(127.5 * (1 + w / s)), s = max |w| over all units (shared)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[2.0, -2.0, 0.0, 1.0], [0.5, -1.0, 0.0, 0.0]]))
    v = convscope.weight_templates(model, "1", (1, 2, 2))
    px = v.pixels()
    assert px.shape == (2, 2, 2, 3) and px.dtype == torch.uint8
    # s = 2: 2 -> 255, -2 -> 0, 0 -> 128 (127.5 rounds half to even), 1 -> round(191.25) = 191
    assert px[0, :, :, 0].tolist() == [[255, 0], [128, 191]]
    # unit 1 on the shared scale: 0.5 -> round(159.375) = 159, -1 -> round(63.75) = 64
    assert px[1, :, :, 0].tolist() == [[159, 64], [128, 128]]
    assert torch.equal(px[..., 0], px[..., 1]) and torch.equal(px[..., 0], px[..., 2])  # grey
    # per-unit scale: unit 1's own max |w| = 1, so 0.5 -> 191, -1 -> 0
    px_unit = v.pixels([1], scale="unit")
    assert px_unit[0, :, :, 0].tolist() == [[191, 0], [128, 128]]


def test_three_channel_templates_are_drawn_in_colour():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3, 1, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0.0, -1.0]]))  # R up, G zero, B down
    v = convscope.weight_templates(model, "1", (3, 1, 1))
    assert v.pixels()[0, 0, 0].tolist() == [255, 128, 0]
    assert v.bias is None


def test_grid_places_each_unit_in_its_cell():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0] * 4, [-1.0] * 4, [0.0] * 4]))
    v = convscope.weight_templates(model, "1", (1, 2, 2))
    img = v.grid(cell=8)  # 2x2 templates upscaled x4 to 8x8 cells, pad 4, one row
    assert img.size[0] == 4 + 3 * (8 + 4)
    px = img.load()
    for k, value in enumerate([255, 0, 128]):
        x, y = 4 + k * 12, 4
        assert px[x, y] == (value,) * 3 and px[x + 7, y + 7] == (value,) * 3
    assert px[0, 0] == (255, 255, 255)  # padding is white


def test_class_names_name_the_units_of_an_output_layer():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    v = convscope.weight_templates(model, "1", (3, 2, 2), class_names=["a", "b", "c"])
    assert v.unit_names == ["a", "b", "c"]


def test_hidden_to_output_reads_the_layer_that_takes_the_hidden_units():
    model = _mlp(hidden=3, outputs=2)
    v = convscope.weight_templates(
        model, "first", (3, 2, 2), hidden_to_output=True, class_names=["cat, kitty", "dog"]
    )
    assert v.output_layer == "3"
    assert torch.equal(v.output_weights, model[3].weight.detach())
    assert torch.equal(v.output_bias, model[3].bias.detach())
    assert v.output_names == ["cat", "dog"]
    assert v.unit_names == ["unit 0", "unit 1", "unit 2"]
    img = v.grid()
    assert img.width > 300 and img.height > 100


def test_hidden_to_output_shows_the_units_the_outputs_weigh_most():
    model = _mlp(hidden=20, outputs=2)
    with torch.no_grad():
        model[3].weight.copy_(torch.zeros(2, 20))
        model[3].weight[:, :16] = 1.0
        model[3].weight[0, 17] = 5.0  # unit 17 matters most; units 16, 18, 19 not at all
    v = convscope.weight_templates(model, "1", (3, 2, 2), hidden_to_output=True)
    chosen = v._units(None, 16)
    assert 17 in chosen and not {16, 18, 19} & set(chosen) and len(chosen) == 16


def test_explicit_output_layer_must_read_the_units():
    model = _mlp(hidden=3, outputs=2)
    v = convscope.weight_templates(model, "1", (3, 2, 2), hidden_to_output=True, output_layer="3")
    assert v.output_layer == "3"
    with pytest.raises(LayerError, match="must be an nn.Linear reading the 3 units"):
        convscope.weight_templates(model, "1", (3, 2, 2), hidden_to_output=True, output_layer="2")


def test_bad_input_is_one_clear_error():
    model = _mlp()
    with pytest.raises(LayerError, match="reads 3 features, but an image of shape"):
        convscope.weight_templates(model, "3", (3, 2, 2))
    with pytest.raises(LayerError, match="is a Flatten, not a linear layer"):
        convscope.weight_templates(model, "0", (3, 2, 2))
    with pytest.raises(LayerError, match="unknown layer '9'"):
        convscope.weight_templates(model, "9", (3, 2, 2))
    with pytest.raises(ModelError, match=r"does not run on an input of shape \(1, 3, 4, 4\)"):
        convscope.weight_templates(model, "1", (3, 4, 4))
    softmax_regression = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    with pytest.raises(LayerError, match="no linear layer after '1' reads its 3 units"):
        convscope.weight_templates(softmax_regression, "1", (3, 2, 2), hidden_to_output=True)
    v = convscope.weight_templates(model, "1", (3, 2, 2))
    with pytest.raises(LayerError, match=r"unit\(s\) \[7\] out of range"):
        v.grid(units=[7])
    with pytest.raises(LayerError, match="no output weights"):
        v.grid(hidden_to_output=True)


def test_a_convolution_is_pointed_to_filters():
    conv = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(2, 2))
    with pytest.raises(LayerError, match="use convscope.filters"):
        convscope.weight_templates(conv, "0", (3, 3, 3))


def test_save_writes_a_png(tmp_path):
    v = convscope.weight_templates(_mlp(), "1", (3, 2, 2))
    path = v.save(tmp_path / "t" / "templates.png")
    from PIL import Image

    assert Image.open(path).size == v.grid().size
