"""Guided backpropagation, deconvnet and guided Grad-CAM.

On ReLU networks: parity with captum. On ReLU6 networks (EfficientNet-Lite0), captum rewrites only
nn.ReLU and returns the plain gradient (checked below), so the reference there is written from the
papers with a different mechanism: every rectifier module of a copy is swapped for a module whose
autograd function applies the rule.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from captum.attr import Deconvolution, GuidedBackprop, GuidedGradCam, LayerGradCam, Saliency
from torch import nn

import convscope
from convscope.core.guard import fingerprints_equal, model_fingerprint
from tests.models import TinyCNN, tiny_input

TARGETS = [0, 3, 1, 4]


class TinyReLU(nn.Module):
    """A ReLU-only CNN (captum supports only nn.ReLU) with a reused and an in-place ReLU.

    No two rectifiers follow each other directly: there, captum's Deconvolution differs from the
    rule (on TinyCNN with ReLU6 swapped for ReLU, its in-place ReLU followed by the reused one gives
    a max error of 0.11 against a hand-written deconvnet, which convscope matches exactly).
    """

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, stride=2)
        self.relu_inplace = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16, 5)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x):
        x = self.act(self.conv1(x))
        x = self.relu_inplace(self.conv2(x))
        x = self.act(self.conv3(x) - 0.1)  # second call of the reused module
        return self.fc(x.mean(dim=(2, 3)))


class _RuleFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, hi, rule):
        ctx.save_for_backward(x)
        ctx.hi, ctx.rule = hi, rule
        return x.clamp(0, hi)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        active = (x > 0) & (x < ctx.hi)
        if ctx.rule == "guided":  # Springenberg: active in forward AND positive gradient
            return g.clamp(min=0) * active, None, None
        return g.clamp(min=0), None, None  # Zeiler & Fergus: rectify the backward signal only


class _RuleModule(nn.Module):
    def __init__(self, hi: float, rule: str) -> None:
        super().__init__()
        self.hi, self.rule = hi, rule

    def forward(self, x):
        return _RuleFn.apply(x, self.hi, self.rule)


def reference(model: nn.Module, x: torch.Tensor, targets: list[int], rule: str) -> torch.Tensor:
    """The paper's rule by module swapping on a copy: (N, C, H, W) reconstruction."""
    m = copy.deepcopy(model).eval()
    for parent in list(m.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU6):
                setattr(parent, name, _RuleModule(6.0, rule))
            elif isinstance(child, nn.ReLU):
                setattr(parent, name, _RuleModule(float("inf"), rule))
    x = x.clone().requires_grad_(True)
    out = m(x)
    (g,) = torch.autograd.grad(out.gather(1, torch.tensor(targets)[:, None]).sum(), x)
    return g


def assert_parity(ours: torch.Tensor, ref: torch.Tensor) -> None:
    for a, b in zip(ours, ref):
        peak = b.abs().max()
        assert peak > 0
        assert (a - b).abs().max() <= 1e-5 * peak


@pytest.fixture
def relu_net():
    return TinyReLU().eval()


def test_guided_backprop_matches_captum_on_relu_net(relu_net):
    x = tiny_input(4, 32)
    r = convscope.explain(relu_net, x, method="guided_backprop", target=TARGETS)
    ref = GuidedBackprop(copy.deepcopy(relu_net)).attribute(x, target=TARGETS)
    assert_parity(r.attributions, ref)
    assert_parity(r.maps, ref.abs().amax(1))


def test_deconvnet_matches_captum_on_relu_net(relu_net):
    x = tiny_input(4, 32)
    r = convscope.explain(relu_net, x, method="deconvnet", target=TARGETS)
    ref = Deconvolution(copy.deepcopy(relu_net)).attribute(x, target=TARGETS)
    assert_parity(r.attributions, ref)


@pytest.mark.parametrize("layer", ["conv2", "conv3"])
def test_guided_gradcam_matches_captum_on_relu_net(relu_net, layer):
    x = tiny_input(4, 32)
    r = convscope.explain(relu_net, x, method="guided_gradcam", layer=layer, target=TARGETS)
    m = copy.deepcopy(relu_net)
    ref = GuidedGradCam(m, getattr(m, layer)).attribute(
        x, target=TARGETS, interpolate_mode="bilinear"
    )
    assert_parity(r.attributions, ref)


@pytest.mark.parametrize("method,rule", [("guided_backprop", "guided"), ("deconvnet", "deconvnet")])
def test_relu6_reused_and_inplace_rectifiers_follow_the_paper(method, rule):
    model = TinyCNN().eval()  # ReLU6, a reused ReLU and an in-place ReLU
    x = tiny_input(4, 32)
    r = convscope.explain(model, x, method=method, target=TARGETS)
    assert_parity(r.attributions, reference(model, x, TARGETS, rule))


@pytest.mark.parametrize("method,rule", [("guided_backprop", "guided"), ("deconvnet", "deconvnet")])
def test_efficientnet_lite0_follows_the_paper(lite0, method, rule):
    x, _ = lite0.prepare([_photo(n) for n in ("coffee", "chelsea", "astronaut", "rocket")])
    targets = [967, 281, 3, 812]  # the top class of the first two, others for the rest
    r = convscope.explain(lite0, x, method=method, target=targets)
    assert_parity(r.attributions, reference(lite0.model, x, targets, rule))


def test_captum_guided_backprop_is_the_plain_gradient_on_relu6(lite0):
    """Why the ReLU6 reference above exists: captum ignores ReLU6, convscope does not."""
    x, _ = lite0.prepare([_photo("coffee")])
    m = copy.deepcopy(lite0.model).eval()
    captum_gb = GuidedBackprop(m).attribute(x, target=967)
    plain = Saliency(m).attribute(x, target=967, abs=False)
    torch.testing.assert_close(captum_gb, plain)
    ours = convscope.explain(lite0, x, method="guided_backprop", target=967).attributions
    assert (ours - plain).abs().max() > 0.1 * plain.abs().max()


def test_guided_gradcam_on_lite0_is_the_guided_rule_times_gradcam(lite0):
    x, _ = lite0.prepare([_photo(n) for n in ("coffee", "rocket", "chelsea", "astronaut")])
    t = [967, 657, 285, 3]
    gg = convscope.explain(lite0, x, method="guided_gradcam", target=t)
    gb = convscope.explain(lite0, x, method="guided_backprop", target=t)
    cam = convscope.explain(lite0, x, method="gradcam", target=t)
    assert_parity(gg.attributions, gb.attributions * cam.maps[:, None])
    # and from independent parts: the paper's guided rule by module swapping, times captum's
    # Grad-CAM at the head's ReLU6 (captum keeps the last call of the reused module: _swish@1)
    m = copy.deepcopy(lite0.model).eval()
    ref_cam = LayerGradCam(m, m._swish).attribute(x, target=t, relu_attributions=True)
    ref_cam = F.interpolate(ref_cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    assert_parity(gg.attributions, reference(lite0.model, x, t, "guided") * ref_cam.detach())


class FunctionalReLU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = F.relu(self.conv(x))  # cannot be rewritten: must be reported
        return self.fc(self.act(x).mean((2, 3)))


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet", "guided_gradcam"])
def test_functional_relu_is_reported_and_model_untouched(method):
    model = FunctionalReLU()
    before = model_fingerprint(model)
    with pytest.raises(convscope.MethodError, match=r"relu.*outside nn.ReLU"):
        convscope.explain(model, tiny_input(2), method=method, layer="conv")
    assert fingerprints_equal(before, model_fingerprint(model))


def test_a_clean_model_is_watched_once_and_again_when_its_forward_changes():
    """The forward pass of a model found without functional rectifiers is not watched again (a
    Python call per tensor operation); a new forward (or new rectifier modules) is."""
    from convscope.core import rectifier_rules

    model = FunctionalReLU()
    model.forward = lambda x: model.fc(model.act(model.conv(x)).mean((2, 3)))  # all modules
    x = tiny_input(2)
    seen = []
    original = rectifier_rules._Watch.__torch_function__

    def counting(self, func, types, args=(), kwargs=None):
        seen.append(func)
        return original(self, func, types, args, kwargs)

    rectifier_rules._Watch.__torch_function__ = counting
    try:
        convscope.explain(model, x, "guided_backprop", target=[0, 1])
        assert seen  # first call: watched
        seen.clear()
        convscope.explain(model, x, "guided_backprop", target=[0, 1])
        assert not seen  # clean, unchanged: not watched
        del model.forward  # back to the class's forward, which applies F.relu
        with pytest.raises(convscope.MethodError, match=r"relu.*outside nn.ReLU"):
            convscope.explain(model, x, "guided_backprop", target=[0, 1])
        assert seen
    finally:
        rectifier_rules._Watch.__torch_function__ = original


FUNCTIONAL_RECTIFIERS = {
    "clip": lambda x: x.clip(0, 6),
    "torch.clip": lambda x: torch.clip(x, min=0.0),
    "clamp_min": lambda x: x.clamp_min(0),
    "clamp_min_": lambda x: x.clone().clamp_min_(0.0),
    "hardtanh(0, 6)": lambda x: F.hardtanh(x, 0.0, 6.0),
    "threshold(0, 0)": lambda x: F.threshold(x, 0.0, 0.0),
    "maximum(x, 0)": lambda x: torch.maximum(x, torch.zeros_like(x)),
    "max(x, 0)": lambda x: torch.max(x, torch.zeros(())),
    "clamp(x, min=int tensor 0)": lambda x: torch.clamp(x, min=torch.tensor(0)),
    "leaky_relu(x, 0)": lambda x: F.leaky_relu(x, 0.0),
}
NOT_RECTIFIERS = {
    "hardtanh(-1, 1)": lambda x: F.hardtanh(x),
    "clamp(-1, 1)": lambda x: x.clamp(-1, 1),
    "threshold(0.5, 0)": lambda x: F.threshold(x, 0.5, 0.0),
    "maximum(x, 1)": lambda x: torch.maximum(x, torch.ones_like(x)),
    "max over channels": lambda x: x + torch.max(x, dim=1, keepdim=True).values,
    "leaky_relu(x)": lambda x: F.leaky_relu(x),
}


class WithFunction(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn
        with torch.random.fork_rng():
            torch.manual_seed(0)  # a fixed model: its maps are not all zero
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, 2)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.fc(self.act(self.fn(self.conv(x))).mean((2, 3)))


@pytest.mark.parametrize("form", FUNCTIONAL_RECTIFIERS)
def test_every_functional_rectifier_form_is_reported(form):
    model = WithFunction(FUNCTIONAL_RECTIFIERS[form])
    before = model_fingerprint(model)
    with pytest.raises(convscope.MethodError, match="outside nn.ReLU"):
        convscope.explain(model, tiny_input(2), method="guided_backprop")
    assert fingerprints_equal(before, model_fingerprint(model))


@pytest.mark.parametrize("form", NOT_RECTIFIERS)
def test_functions_that_do_not_rectify_are_not_reported(form):
    """Same arithmetic as autograd's outside the rectifier modules: guided backprop runs, and
    equals the paper's rule written by hand on the one ReLU module."""
    model = WithFunction(NOT_RECTIFIERS[form])
    x = tiny_input(2)
    r = convscope.explain(model, x, method="guided_backprop", target=[0, 1])
    assert_parity(r.maps, reference(model, x, [0, 1], "guided").abs().amax(dim=1))


class OutputModifiedInPlace(nn.Module):
    """A rectifier's output modified in place afterwards (``x = act(y); x += z``), and an in-place
    rectifier applied twice to one tensor: autograd refuses the rectifiers' own backward here, so
    the methods take the robust path (each rectifier's mask kept by convscope)."""

    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.c1, self.c2 = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 6, 3, padding=1)
            self.c3, self.fc = nn.Conv2d(6, 6, 3, padding=1), nn.Linear(6, 4)
        self.act = act

    def forward(self, x):
        y = self.c1(x)
        x = self.act(y)
        x += self.c2(y)
        x = self.act(self.act(self.c3(x) - 0.2))
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize("act", [nn.ReLU(), nn.ReLU(inplace=True), nn.ReLU6(inplace=True)])
@pytest.mark.parametrize("method,rule", [("guided_backprop", "guided"), ("deconvnet", "deconvnet")])
def test_outputs_modified_in_place_follow_the_paper(act, method, rule):
    model = OutputModifiedInPlace(act).eval()
    x = tiny_input(2, 8)
    before = model_fingerprint(model)
    r = convscope.explain(model, x, method=method, target=[0, 2])
    assert_parity(r.attributions, reference(model, x, [0, 2], rule))
    assert fingerprints_equal(before, model_fingerprint(model))


def test_guided_gradcam_with_outputs_modified_in_place():
    model = OutputModifiedInPlace(nn.ReLU()).eval()
    x = tiny_input(2, 8)
    gg = convscope.explain(model, x, method="guided_gradcam", target=[0, 2], layer="c3")
    # Grad-CAM at c3 by hand on a copy (the backward from the score to c3 needs no rectifier
    # output that was modified in place), times the paper's guided reconstruction
    m = copy.deepcopy(model)
    kept = []
    handle = m.c3.register_forward_hook(lambda mod, i, o: kept.append(o))
    out = m(x)
    handle.remove()
    (g,) = torch.autograd.grad(out.gather(1, torch.tensor([[0], [2]])).sum(), kept[0])
    cam = torch.relu((g.mean(dim=(2, 3), keepdim=True) * kept[0]).sum(dim=1, keepdim=True))
    up = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    assert_parity(gg.attributions, reference(model, x, [0, 2], "guided") * up.detach())


def test_threshold_module_is_a_rectifier():
    from convscope.core.rectifier_rules import RectifierRules, active_range

    assert active_range(nn.Threshold(0.0, 0.0)) == (0.0, float("inf"))
    assert active_range(nn.Threshold(0.5, 0.0)) is None
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.Threshold(0.0, 0.0), nn.Flatten(), nn.LazyLinear(2)
    )
    model(tiny_input(1))
    x = tiny_input(2)
    r = convscope.explain(model, x, method="guided_backprop", target=[0, 1])
    ref = copy.deepcopy(model)
    ref[1] = nn.ReLU()
    assert_parity(r.attributions, reference(ref, x, [0, 1], "guided"))
    rules = RectifierRules(model, "plain")
    rules.rule = "guided"  # plain and guided share a graph
    with pytest.raises(ValueError, match="deconvnet rule builds another graph"):
        rules.rule = "deconvnet"
    with pytest.raises(ValueError, match="unknown rule 'Guided'"):
        rules.rule = "Guided"


def test_model_without_rectifiers_is_a_clear_error():
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.SiLU(), nn.Flatten(), nn.LazyLinear(2))
    model(tiny_input(1))
    with pytest.raises(convscope.MethodError, match="needs rectifier modules"):
        convscope.explain(model, tiny_input(2), method="guided_backprop")


def _photo(name: str):
    from PIL import Image
    from skimage import data

    return Image.fromarray(getattr(data, name)())
