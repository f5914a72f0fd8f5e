"""Integrated gradients: parity with captum's IntegratedGradients, completeness, and by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients

import convscope
from convscope.attribution.integrated_gradients import RULES, quadrature
from tests.helpers import LITE0_TARGETS, TINY_TARGETS, LinearImage, run_method
from tests.models import TinyCNN, tiny_input
from tests.reference import assert_no_hooks, assert_parity, reference_copy


def captum_ig(model, x, targets, steps, rule, baseline=None) -> torch.Tensor:
    ig = IntegratedGradients(reference_copy(model))
    return ig.attribute(x.clone(), baselines=baseline, target=targets, n_steps=steps, method=rule)


def score_of(model, x, targets) -> torch.Tensor:
    with torch.no_grad():
        return model(x).gather(1, torch.tensor(targets)[:, None])[:, 0]


@pytest.mark.parametrize("rule", RULES)
def test_quadrature_matches_captum(rule):
    from captum.attr._utils.approximation_methods import approximation_parameters

    step_sizes, alphas = approximation_parameters(rule)
    for steps in (2, 7, 50):
        a, w = quadrature(rule, steps)
        np.testing.assert_allclose(a.numpy(), alphas(steps), rtol=0, atol=1e-14)
        np.testing.assert_allclose(w.numpy(), step_sizes(steps), rtol=0, atol=1e-14)


@pytest.mark.parametrize("rule", RULES)
def test_ig_matches_captum_tiny(rule):
    model = TinyCNN().eval()
    x = tiny_input(4, 32)
    ours = convscope.explain(
        model, x, method="integrated_gradients", target=TINY_TARGETS, steps=20, rule=rule
    )
    assert ours.targets == TINY_TARGETS
    ref = captum_ig(model, x, TINY_TARGETS, 20, rule)
    assert_parity(ours.raw_maps, ref.sum(dim=1), f"IG {rule} vs captum [TinyCNN]")
    assert_parity(ours.maps, ref.sum(dim=1), f"IG {rule} upsampled vs captum [TinyCNN]")
    assert_no_hooks(model)


def test_ig_default_options_and_tensor_baselines_match_captum():
    model = TinyCNN().eval()
    x = tiny_input(4, 32)
    out, _ = run_method("integrated_gradients", model, x, TINY_TARGETS)  # 50 Gauss-Legendre
    ref = captum_ig(model, x, TINY_TARGETS, 50, "gausslegendre")
    assert_parity(out.extras["attributions"], ref, "IG defaults, attributions vs captum")
    colour = torch.tensor([0.3, -0.2, 0.5]).view(3, 1, 1)  # one colour, broadcast
    per_image = tiny_input(4, 32, seed=7) * 0.1  # one baseline per image
    for baseline in (colour, per_image, -0.7):
        out, _ = run_method(
            "integrated_gradients", model, x, TINY_TARGETS, steps=12, baseline=baseline
        )
        full = baseline if isinstance(baseline, float) else baseline.expand_as(x).contiguous()
        ref = captum_ig(model, x, TINY_TARGETS, 12, "gausslegendre", baseline=full)
        assert_parity(out.maps, ref.sum(dim=1), "IG tensor/float baseline vs captum")


def test_ig_matches_captum_lite0(lite0_on_device):
    lite0, lite0_x = lite0_on_device  # on the parity tests' device (the CPU by default)
    ours = convscope.explain(
        lite0, lite0_x, method="integrated_gradients", target=LITE0_TARGETS, steps=16
    )
    ref = captum_ig(lite0.model, lite0_x, LITE0_TARGETS, 16, "gausslegendre")
    assert_parity(ours.maps, ref.sum(dim=1), "IG vs captum [Lite0]")
    assert_no_hooks(lite0.model)


@pytest.mark.parametrize("rule", ["riemann_trapezoid", "riemann_middle", "gausslegendre"])
def test_ig_completeness(rule):
    """sum of attributions = S(x) - S(baseline), up to the quadrature error.

    Observed on TinyCNN, 300 steps: trapezoid 4.1e-3 (captum's trapezoid weights sum to
    1 - 1/steps; rescaled they give 2.6e-3), middle 1.2e-3, Gauss-Legendre 6.9e-4 (but 1.3e-2
    with 50 steps: the ReLU network's path integrand has kinks, which Gauss-Legendre handles no
    better than Riemann sums).
    """
    steps = 300
    model = TinyCNN().eval()
    x = tiny_input(4, 32)
    baseline = 0.25
    out, _ = run_method(
        "integrated_gradients", model, x, TINY_TARGETS, steps=steps, rule=rule, baseline=baseline
    )
    gap = score_of(model, x, TINY_TARGETS) - score_of(
        model, torch.full_like(x, baseline), TINY_TARGETS
    )
    total = out.extras["attributions"].flatten(1).sum(dim=1)
    rel = ((total - gap).abs() / gap.abs()).max().item()
    print(f"COMPLETENESS IG {rule} steps={steps}: max |sum IG - gap| / |gap| = {rel:.3e}")
    assert rel < 1e-2
    torch.testing.assert_close(out.maps.flatten(1).sum(dim=1), total, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.extras["delta"], total - gap, rtol=1e-4, atol=1e-5)


def test_ig_of_a_linear_model_by_hand():
    """f = W x: IG_c = (x_c - x'_c) W_tc exactly for any rule whose weights sum to 1."""
    model = LinearImage().eval()
    x = torch.randn(3, 3, 8, 8)
    targets = [1, 2, 0]
    for rule in ("gausslegendre", "riemann_left", "riemann_middle", "riemann_right"):
        out, _ = run_method(
            "integrated_gradients", model, x, targets, steps=5, rule=rule, baseline=0.5
        )
        for i, c in enumerate(targets):
            expected = (x[i] - 0.5) * model.weight(c)
            torch.testing.assert_close(out.extras["attributions"][i], expected)
            torch.testing.assert_close(out.maps[i], expected.sum(dim=0))
        torch.testing.assert_close(out.extras["delta"], torch.zeros(3), rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    "options",
    [
        {"steps": 0},
        {"steps": 1, "rule": "riemann_trapezoid"},
        {"rule": "simpson"},
        {"baseline": torch.zeros(5, 1, 1)},
        {"baseline": "black"},
        {"batch_size": -1},
    ],
    ids=str,
)
def test_ig_rejects_bad_options(options):
    with pytest.raises(convscope.MethodError):
        run_method("integrated_gradients", TinyCNN().eval(), tiny_input(2, 16), **options)
