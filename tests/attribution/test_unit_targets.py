"""A unit as target ("the gradient of a particular neuron", lecture 003): by hand on a tiny model,
and against captum's neuron attributions on a ReLU network."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from captum.attr import (
    NeuronDeconvolution,
    NeuronGradient,
    NeuronGuidedBackprop,
    NeuronIntegratedGradients,
)
from torch import nn

import convscope
from convscope.core.unit_target import UNIT_METHODS
from tests.models import TinyCNN, tiny_input


class ReLUNet(nn.Module):
    """ReLU modules only (captum's guided backprop and deconvnet rewrite nn.ReLU), one reused."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1, stride=2)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.4)

    def forward(self, x):
        x = self.act(self.conv1(x))
        x = self.relu2(self.conv2(x))
        x = self.act(self.conv3(x))  # second call of the reused ReLU
        return self.fc(x.mean(dim=(2, 3)))


def test_saliency_of_a_neuron_by_hand():
    """conv1 (3x3, padding 1) unit (channel 2, row 3, col 4): its gradient is the filter w[2]
    placed on input rows 2-4, columns 3-5; the map is max over colours of its absolute value."""
    model = TinyCNN()
    r = convscope.explain(model, tiny_input(2), "saliency", target="conv1:2:3:4")
    want = torch.zeros(16, 16)
    want[2:5, 3:6] = model.conv1.weight[2].detach().abs().amax(dim=0)
    assert torch.allclose(r.maps[0], want) and torch.allclose(r.maps[1], want)
    assert r.target_names == ["conv1:2:3:4"] * 2 and r.targets is None
    conv1 = F.conv2d(tiny_input(2), model.conv1.weight, model.conv1.bias, padding=1)
    assert torch.allclose(r.scores, conv1[:, 2, 3, 4])


def test_saliency_of_a_channel_mean_by_hand():
    """d mean_ij conv1[2, i, j] / dx = conv_transpose(ones / 256, w[2]) (padding 1)."""
    model = TinyCNN()
    r = convscope.explain(model, tiny_input(1), "saliency", target="conv1:2")
    ones = torch.full((1, 1, 16, 16), 1 / 256)
    grad = F.conv_transpose2d(ones, model.conv1.weight[2:3].detach(), padding=1)
    assert torch.allclose(r.maps[0], grad[0].abs().amax(dim=0), atol=1e-7)


def _neuron(layer, k, i=None, j=None):
    if i is None:
        return lambda out: out[:, k].mean(dim=(1, 2))
    return (k, i, j)


CASES = [("conv2", 5, 2, 3), ("act@1", 3, None, None), ("conv3", 1, 0, 7), ("relu2", 4, 7, 0)]


@pytest.mark.parametrize("layer,k,i,j", CASES)
def test_parity_with_captum_neuron_methods(layer, k, i, j):
    model = ReLUNet().eval()
    x = tiny_input(3)
    spec = f"{layer}:{k}" if i is None else f"{layer}:{k}:{i}:{j}"
    name, _, call = layer.partition("@")
    module = model.get_submodule(name)
    original = model.act
    if call:  # captum hooks a module at every call: give it the second call of `act` alone
        model.act = _SecondCall()
        module = model.act.second
    sel = _neuron(layer, k, i, j)
    refs = {
        "saliency": NeuronGradient(model, module).attribute(x, sel).abs().amax(dim=1),
        "guided_backprop": NeuronGuidedBackprop(model, module).attribute(x, sel),
        "deconvnet": NeuronDeconvolution(model, module).attribute(x, sel),
        "integrated_gradients": NeuronIntegratedGradients(model, module)
        .attribute(x, sel, n_steps=8, method="gausslegendre")
        .sum(dim=1),
    }
    model.act = original
    for method, want in refs.items():
        opts = {"steps": 8} if method == "integrated_gradients" else {}
        r = convscope.explain(model, x, method, target=spec, **opts)
        got = r.attributions if method in ("guided_backprop", "deconvnet") else r.maps
        scale = want.abs().max()
        assert scale > 0
        assert (got - want).abs().max() <= 1e-5 * scale, method


class _SecondCall(nn.Module):
    """The reused ReLU, counting its calls: captum sees only the second call as 'the layer'."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.ReLU()
        self.second = nn.ReLU()
        self.n = 0

    def forward(self, x):
        self.n += 1
        return (self.first if self.n % 2 else self.second)(x)


def test_smoothgrad_of_a_unit_by_hand():
    """The documented noise (image i, copy j: the j-th randn of a generator seeded seed + i, times
    sigma_i), the unit's gradient on each noisy copy, the mean of absolute values, max over c."""
    model = ReLUNet().eval()
    x = tiny_input(2)
    n, noise, seed = 4, 0.2, 7
    r = convscope.explain(
        model, x, "smoothgrad", target="conv2:5:2:3", n_samples=n, noise=noise, seed=seed
    )
    for i in range(2):
        g = torch.Generator().manual_seed(seed + i)
        sigma = noise * (x[i].max() - x[i].min())
        total = torch.zeros_like(x[i])
        for _ in range(n):
            xi = (x[i] + sigma * torch.randn(x[i].shape, generator=g)).requires_grad_(True)
            a = F.conv2d(
                model.act(model.conv1(xi[None])),
                model.conv2.weight,
                model.conv2.bias,
                stride=2,
                padding=1,
            )
            (gr,) = torch.autograd.grad(a[0, 5, 2, 3], xi)
            total += gr.abs()
        assert torch.allclose(r.maps[i], (total / n).amax(dim=0), atol=1e-6)


def test_gradcam_of_a_unit_at_an_earlier_layer_by_hand():
    model = ReLUNet().eval()
    x = tiny_input(2)
    r = convscope.explain(model, x, "gradcam", target="conv3:1", layer="relu2")
    with torch.enable_grad():
        a = model.relu2(model.conv2(model.act(model.conv1(x)))).detach().requires_grad_(True)
        s = model.conv3(a)[:, 1].mean(dim=(1, 2))
        (g,) = torch.autograd.grad(s.sum(), a)
    want = (g.mean(dim=(2, 3))[:, :, None, None] * a.detach()).sum(1).clamp_min(0)
    assert want.abs().max() > 0
    assert torch.allclose(r.raw_maps, want, atol=1e-6)
    with pytest.raises(convscope.LayerError, match="runs after the unit"):
        convscope.explain(model, x, "gradcam", target="conv2:1", layer="conv3")


@pytest.mark.parametrize("method", [m for m in convscope.methods() if m not in UNIT_METHODS])
def test_other_methods_refuse_a_unit_with_the_reason(method):
    with pytest.raises(
        convscope.MethodError, match=re.escape(method) + " cannot explain a unit: .+"
    ):
        convscope.explain(TinyCNN(), tiny_input(1), method, target="conv2:1")


def test_bad_unit_targets():
    model, x = TinyCNN(), tiny_input(1)
    with pytest.raises(convscope.LayerError, match="channel 8 is out of range"):
        convscope.explain(model, x, "saliency", target="conv2:8")
    with pytest.raises(convscope.LayerError, match=r"position \(8, 0\) is outside the 8x8 map"):
        convscope.explain(model, x, "saliency", target="conv2:1:8:0")
    with pytest.raises(convscope.LayerError, match="runs 2 times"):
        convscope.explain(model, x, "saliency", target="act:1")
    with pytest.raises(convscope.LayerError, match="names a whole layer"):
        convscope.explain(model, x, "saliency", target=convscope.Unit("conv2"))
    with pytest.raises(convscope.TargetError, match="a unit's value has no softmax"):
        convscope.explain(model, x, "saliency", target="conv2:1", score="prob")
    r = convscope.explain(model, x, "saliency", target="act@1:1")  # a call of a reused module
    assert r.maps.shape == (1, 16, 16) and r.maps.abs().sum() > 0
