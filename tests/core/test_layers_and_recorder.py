from __future__ import annotations

import pytest
import torch
from torch import nn

import convscope
from convscope.core.layer_listing import auto_layer, list_layers, parametric_layers
from convscope.core.layers import resolve_layer
from convscope.core.recorder import Recorder
from convscope.errors import LayerError
from tests.models import TinyCNN, tiny_input


def test_list_layers_one_row_per_call(tiny, tiny_x):
    rows = list_layers(tiny, tiny_x)
    names = [r.name for r in rows]
    assert names == [
        "conv1",
        "act@0",
        "conv2",
        "relu_inplace",
        "act@1",
        "conv3",
        "relu6",
        "pool",
        "fc",
    ]
    shapes = {r.name: r.output_shape for r in rows}
    assert shapes["act@1"] == (4, 8, 8, 8) and shapes["fc"] == (4, 5)
    assert {r.name: r.params for r in rows}["conv1"] == 8 * 3 * 9 + 8


def test_auto_layer_is_last_spatial_map_before_pooling(tiny, tiny_x, lite0):
    assert auto_layer(tiny, tiny_x).spec == "relu6"
    x = torch.zeros(1, 3, 224, 224)
    assert auto_layer(lite0.model, x).spec == lite0.default_layer == "_swish@1"


def test_wrong_layer_names_suggest_close_matches(tiny):
    with pytest.raises(
        LayerError, match=r"unknown layer 'conv4' \(did you mean: conv3, conv2, conv1"
    ):
        resolve_layer(tiny, "conv4")
    with pytest.raises(LayerError, match="call number"):
        resolve_layer(tiny, "act@x")
    assert resolve_layer(tiny, tiny.conv2).name == "conv2"


def test_recorder_records_each_call_and_survives_inplace(tiny, tiny_x):
    with torch.no_grad(), Recorder(tiny, ["conv2", "act@0", "act@1"]) as rec:
        tiny(tiny_x)
    conv2 = rec.activation("conv2")
    # conv2's output is followed by an in-place ReLU: the record must keep the negative values
    expected = tiny.conv2(torch.relu(tiny.conv1(tiny_x)))
    torch.testing.assert_close(conv2, expected)
    assert (conv2 < 0).any()
    assert rec.activation("act@0").shape == (4, 8, 16, 16)
    torch.testing.assert_close(rec.activation("act@1"), torch.relu(expected))
    with pytest.raises(LayerError, match="act@0, act@1"):
        rec.activation("act")
    with pytest.raises(LayerError, match="call @2 does not exist"):
        rec.activation("act@2")
    assert all(not m._forward_hooks for m in tiny.modules())


def test_recorder_gradients_match_autograd_and_hooks_go_on_error(tiny, tiny_x):
    for p in tiny.parameters():
        p.requires_grad_(False)  # a frozen model: recorded outputs must still be differentiable
    with Recorder(tiny, ["conv3"], gradients=True) as rec:
        out = tiny(tiny_x)
        a = rec.activation("conv3")
        (g,) = rec.grad(out[:, 1].sum(), [a])
    a2 = tiny.conv3(torch.relu(torch.relu(tiny.conv2(torch.relu(tiny.conv1(tiny_x)))))).detach()
    a2.requires_grad_(True)
    ref = tiny.fc(tiny.pool(torch.nn.functional.relu6(a2)).flatten(1))[:, 1].sum()
    (g2,) = torch.autograd.grad(ref, a2)
    torch.testing.assert_close(g, g2)
    with pytest.raises(RuntimeError, match="boom"), Recorder(tiny, ["conv1"]):
        raise RuntimeError("boom")
    assert all(not m._forward_hooks for m in tiny.modules())


def test_model_without_feature_maps_has_no_auto_layer():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    with pytest.raises(LayerError, match="no layer with a 4-D"):
        convscope.explain(mlp, torch.randn(2, 3, 2, 2), method="gradcam")


def test_recorder_keeps_only_the_calls_asked_for(tiny, tiny_x):
    with torch.no_grad(), Recorder(tiny, ["act@1"]) as rec:
        tiny(tiny_x)
    assert len(rec.calls["act"]) == 2 and not isinstance(rec.calls["act"][0], torch.Tensor)
    assert list(rec.activations()) == ["act@1"]
    expected = torch.relu(tiny.conv2(torch.relu(tiny.conv1(tiny_x))))
    torch.testing.assert_close(rec.activation("act@1"), expected)
    with pytest.raises(LayerError, match="was not recorded"):
        rec.activation("act@0")


def test_parametric_layers_run_top_down():
    model = TinyCNN()
    assert parametric_layers(model, tiny_input(1)) == ["fc", "conv3", "conv2", "conv1"]


def test_layer_functions_take_a_bundle(tiny, tiny_x):
    bundle = convscope.load_model(tiny)
    assert list_layers(bundle, tiny_x) == list_layers(tiny, tiny_x)
    assert convscope.list_layers(bundle, tiny_x)[0].name == "conv1"
    assert auto_layer(bundle, tiny_x).spec == "relu6"
    assert resolve_layer(bundle, "conv2").module is tiny.conv2
    # without an example: a zero image at the bundle's input size (224 by default)
    rows = {r.name: r.output_shape for r in list_layers(bundle)}
    assert rows["conv1"] == (1, 8, 224, 224) and rows["fc"] == (1, 5)
    with pytest.raises(LayerError, match="example input is needed"):
        list_layers(tiny)


def test_recorder_stop_ends_the_pass_after_the_last_layer_asked_for():
    from tests.models import TinyCNN, tiny_input

    class CountingLinear(nn.Linear):
        calls = 0

        def forward(self, x):
            CountingLinear.calls += 1
            return super().forward(x)

    model = TinyCNN()
    fc = CountingLinear(16, 5)
    fc.load_state_dict(model.fc.state_dict())
    model.fc = fc
    x = tiny_input(2)
    with Recorder(model, ["conv2", "act@1"]) as full:
        out = full.forward(x)
        want = full.activation("act@1").clone()
    assert out.shape == (2, 5) and CountingLinear.calls == 1
    with Recorder(model, ["conv2", "act@1"], stop=True) as rec:
        assert rec.forward(x) is None
        torch.testing.assert_close(rec.activation("act@1"), want)
        assert len(rec.calls["act"]) == 2  # stopped at the second call: conv3 never ran
    assert CountingLinear.calls == 1
    assert not model.act._forward_hooks  # hooks removed as always
