"""SmoothGrad: parity with captum's NoiseTunnel(Saliency) on the same noise, and by hand.

Same noise: captum's ``NoiseTunnel._add_noise_to_input`` draws ``torch.normal(0, sigma)`` of shape
``(nt_samples * batch, C, H, W)`` from the global generator, i.e. ``sigma * torch.randn(...)``.
convscope draws image ``i``'s noise as ``torch.randn((n_samples, C, H, W))`` from a generator
seeded ``seed + i``, so captum run on image ``i`` alone (its own ``stdevs``, since convscope's
sigma is relative to each image's value range) under ``torch.manual_seed(seed + i)`` sees the
same noise, with no monkeypatching.
"""

from __future__ import annotations

import pytest
import torch
from captum.attr import NoiseTunnel, Saliency

import convscope
from tests.helpers import LITE0_TARGETS, TINY_TARGETS, LinearImage, run_method
from tests.models import TinyCNN, tiny_input
from tests.reference import assert_no_hooks, assert_parity, reference_copy


def sigmas(x: torch.Tensor, noise: float) -> torch.Tensor:
    flat = x.flatten(1)
    return noise * (flat.amax(dim=1) - flat.amin(dim=1))


def captum_smoothgrad(
    model, x, targets, n_samples: int, noise: float, seed: int | None
) -> torch.Tensor:
    """captum's SmoothGrad map, image by image; each image's noise from torch.manual_seed(seed + i)
    (or, with seed None, the global generator as it stands, images in order)."""
    ref = reference_copy(model)
    maps = []
    for i, sigma in enumerate(sigmas(x, noise).tolist()):
        if seed is not None:
            torch.manual_seed(seed + i)
        attr = NoiseTunnel(Saliency(ref)).attribute(
            x[i : i + 1].clone(),
            nt_type="smoothgrad",
            nt_samples=n_samples,
            stdevs=sigma,
            target=targets[i],
            abs=True,
        )
        maps.append(attr.amax(dim=1))
    return torch.cat(maps)


def test_smoothgrad_matches_captum_tiny():
    model = TinyCNN().eval()
    x = tiny_input(4, 32)
    ours = convscope.explain(
        model, x, method="smoothgrad", target=TINY_TARGETS, n_samples=8, noise=0.2, seed=11
    )
    assert ours.targets == TINY_TARGETS
    ref = captum_smoothgrad(model, x, TINY_TARGETS, 8, 0.2, seed=11)
    assert_parity(ours.raw_maps, ref, "smoothgrad raw vs captum [TinyCNN]")
    assert_parity(ours.maps, ref, "smoothgrad vs captum [TinyCNN]")
    assert_no_hooks(model)


def test_smoothgrad_matches_captum_lite0(lite0, lite0_x):
    # captum's noisy copies (repeat_interleave + noise) are contiguous whatever the input's memory
    # format, convscope's keep the input's (channels-last here); Lite0's gradients differ by ~1e-3
    # between the two formats, so both are given the same, contiguous, input.
    x = lite0_x.contiguous()
    ours = convscope.explain(
        lite0, x, method="smoothgrad", target=LITE0_TARGETS, n_samples=3, seed=0
    )
    ref = captum_smoothgrad(lite0.model, x, LITE0_TARGETS, 3, 0.15, seed=0)
    assert_parity(ours.maps, ref, "smoothgrad vs captum [Lite0]")
    assert_no_hooks(lite0.model)


def test_smoothgrad_without_seed_uses_the_global_generator():
    """seed=None draws from torch's global generator; with all copies in one forward, image
    after image, as captum run image after image."""
    model = TinyCNN().eval()
    x = tiny_input(4, 32)
    torch.manual_seed(123)
    out, _ = run_method("smoothgrad", model, x, TINY_TARGETS, n_samples=5, batch_size=20)
    torch.manual_seed(123)
    ref = captum_smoothgrad(model, x, TINY_TARGETS, 5, 0.15, seed=None)
    assert_parity(out.maps, ref, "smoothgrad (global generator) vs captum [TinyCNN]")


def test_smoothgrad_of_a_linear_model_is_saliency_whatever_the_noise():
    """f = W x has the same gradient everywhere, so averaging over noise changes nothing."""
    model = LinearImage().eval()
    x = torch.randn(3, 3, 8, 8)
    targets = [2, 0, 1]
    sal = convscope.explain(model, x, method="saliency", target=targets)
    for noise in (0.0, 0.15, 3.0):
        sg = convscope.explain(
            model, x, method="smoothgrad", target=targets, noise=noise, n_samples=7
        )
        torch.testing.assert_close(sg.maps, sal.maps, rtol=1e-6, atol=0)
    for i, c in enumerate(targets):  # and saliency is max_c |W_c| (by hand)
        torch.testing.assert_close(sal.maps[i], model.weight(c).abs().amax(dim=0))


def test_smoothgrad_without_noise_is_saliency():
    model = TinyCNN().eval()
    x = tiny_input(4, 32)
    sal = convscope.explain(model, x, method="saliency", target=TINY_TARGETS)
    sg = convscope.explain(
        model, x, method="smoothgrad", target=TINY_TARGETS, noise=0.0, n_samples=3
    )
    torch.testing.assert_close(sg.maps, sal.maps, rtol=1e-5, atol=1e-7)


def test_smoothgrad_seed_is_reproducible_and_matters():
    model = TinyCNN().eval()
    x = tiny_input(2, 16)
    a = convscope.explain(model, x, method="smoothgrad", n_samples=4, seed=1).maps
    b = convscope.explain(model, x, method="smoothgrad", n_samples=4, seed=1).maps
    c = convscope.explain(model, x, method="smoothgrad", n_samples=4, seed=2).maps
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_smoothgrad_extras():
    model = TinyCNN().eval()
    x = tiny_input(4, 16)
    out, ctx = run_method("smoothgrad", model, x, TINY_TARGETS, n_samples=4, seed=0)
    attr = out.extras["attributions"]
    assert attr.shape == x.shape and bool((attr >= 0).all())
    torch.testing.assert_close(out.maps, attr.amax(dim=1), rtol=0, atol=0)
    torch.testing.assert_close(out.extras["sigma"], sigmas(x, 0.15))
    torch.testing.assert_close(out.output, model(x))
    assert ctx.target.indices.tolist() == TINY_TARGETS


@pytest.mark.parametrize(
    "options",
    [{"n_samples": 0}, {"n_samples": 2.5}, {"noise": -0.1}, {"seed": "a"}, {"batch_size": 0}],
    ids=str,
)
def test_smoothgrad_rejects_bad_options(options):
    with pytest.raises(convscope.MethodError):
        run_method("smoothgrad", TinyCNN().eval(), tiny_input(2, 16), **options)
