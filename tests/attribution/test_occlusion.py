"""Occlusion: parity with captum's Occlusion (windows over all channels), window placement at the
border, no autograd, and by hand."""

from __future__ import annotations

import pytest
import torch
from captum.attr import Occlusion
from torch import nn

import convscope
from convscope.attribution.occlusion import window_masks
from tests.helpers import LITE0_TARGETS, TINY_TARGETS, LinearImage, run_method
from tests.models import TinyCNN, tiny_input
from tests.reference import assert_no_hooks, assert_parity, reference_copy


def captum_occlusion(model, x, targets, window, stride, baseline=0.0) -> torch.Tensor:
    (wh, ww), (sh, sw) = (
        (window, window) if isinstance(window, int) else window,
        (stride, stride) if isinstance(stride, int) else stride,
    )
    c = x.shape[1]
    return Occlusion(reference_copy(model)).attribute(
        x.clone(),
        sliding_window_shapes=(c, wh, ww),
        strides=(c, sh, sw),
        baselines=baseline,
        target=targets,
        perturbations_per_eval=16,
    )


# (window, stride): exact tiling; (32 - 10) % 4 != 0 (the last window is cut by the border);
# rectangular windows and strides with (32 - 6) % 5 != 0.
TINY_CASES = [(8, 4), (10, 4), ((8, 6), (3, 5))]


@pytest.mark.parametrize(("window", "stride"), TINY_CASES, ids=str)
def test_occlusion_matches_captum_tiny(window, stride):
    model = TinyCNN().eval()
    x = tiny_input(4, 32)
    ours = convscope.explain(
        model, x, method="occlusion", target=TINY_TARGETS, window=window, stride=stride
    )
    assert ours.targets == TINY_TARGETS
    ref = captum_occlusion(model, x, TINY_TARGETS, window, stride)
    assert bool((ref == ref[:, :1]).all())  # captum's map is the same in every channel
    assert_parity(ours.raw_maps, ref[:, 0], f"occlusion {window}/{stride} vs captum [TinyCNN]")
    assert_parity(ours.maps, ref[:, 0], f"occlusion {window}/{stride} up vs captum [TinyCNN]")
    assert_no_hooks(model)


def test_occlusion_tensor_baseline_matches_captum():
    model = TinyCNN().eval()
    x = tiny_input(4, 32)
    baseline = x.mean(dim=(2, 3), keepdim=True)  # each image's mean colour, (N, C, 1, 1)
    out, _ = run_method(
        "occlusion", model, x, TINY_TARGETS, window=8, stride=4, baseline=baseline, batch_size=7
    )
    ref = captum_occlusion(model, x, TINY_TARGETS, 8, 4, baseline=baseline.expand_as(x))
    assert_parity(out.extras["attributions"], ref, "occlusion per-image baseline vs captum")


def test_occlusion_matches_captum_lite0(lite0_on_device):
    lite0, lite0_x = lite0_on_device  # on the parity tests' device (the CPU by default)
    # captum occludes contiguous copies whatever the input's memory format (see test_smoothgrad)
    x = lite0_x.contiguous()  # four photos, four different targets
    targets = LITE0_TARGETS
    # (224 - 64) % 48 != 0: 5 x 5 windows, the last row and column cut by the border
    ours = convscope.explain(
        lite0, x, method="occlusion", target=targets, window=64, stride=48, baseline=-1.0
    )
    ref = captum_occlusion(lite0.model, x, targets, 64, 48, baseline=-1.0)
    assert_parity(ours.maps, ref[:, 0], "occlusion vs captum [Lite0]")
    assert_no_hooks(lite0.model)


def test_window_placement_follows_captum():
    """Starts at 0, s, 2s, ..., ceil((L - w)/s) s; the last window is cut by the border."""
    m = window_masks(32, 10, 4, torch.device("cpu"))
    assert m.shape == (7, 32)
    starts = m.float().argmax(dim=1).tolist()
    assert starts == [0, 4, 8, 12, 16, 20, 24]
    assert m.sum(dim=1).tolist() == [10] * 6 + [8]
    assert window_masks(32, 8, 4, torch.device("cpu")).sum(dim=1).tolist() == [8] * 7
    assert window_masks(16, 40, 8, torch.device("cpu")).tolist() == [[True] * 16]  # clipped


class GradRecorder(nn.Module):
    """TinyCNN that records whether autograd was on in each forward."""

    def __init__(self) -> None:
        super().__init__()
        self.net = TinyCNN()
        self.grad_enabled: list[bool] = []

    def forward(self, x):
        self.grad_enabled.append(torch.is_grad_enabled())
        return self.net(x)


def test_occlusion_runs_without_autograd():
    model = GradRecorder().eval()
    x = tiny_input(2, 16)
    for options in ({}, {"window": 4, "stride": 2, "batch_size": 5}):
        model.grad_enabled.clear()
        with torch.enable_grad():
            out, _ = run_method("occlusion", model, x, **options)
        assert len(model.grad_enabled) >= 2 and not any(model.grad_enabled), model.grad_enabled
        assert not out.maps.requires_grad
    assert len(model.grad_enabled) == 1 + 20  # clean + ceil(7 * 7 windows * 2 images / 5)
    assert all(p.grad is None for p in model.parameters())


def test_occlusion_of_a_linear_model_by_hand():
    """f = W x, baseline 0, 1x1 windows: S(x) - S(x with pixel ij hidden) = sum_c W_tcij x_cij."""
    model = LinearImage().eval()
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    targets = [1, 0, 2]
    # S(x) - S(x hidden) subtracts two float32 sums of 192 terms of size ~1: rounding of up to
    # ~192 * 2^-24 * |S| (a few 1e-5) is the arithmetic, not the method; a wrong map is off by ~1.
    tol = {"rtol": 0.0, "atol": 1e-4}
    r = convscope.explain(model, x, method="occlusion", target=targets, window=1, stride=1)
    for i, c in enumerate(targets):
        torch.testing.assert_close(r.maps[i], (model.weight(c) * x[i]).sum(dim=0), **tol)
    # 2x2 windows, stride 1: each pixel averages the window sums of the windows covering it
    r = convscope.explain(model, x, method="occlusion", target=targets, window=2, stride=1)
    contrib = torch.stack([(model.weight(c) * x[i]).sum(dim=0) for i, c in enumerate(targets)])
    window_sum = nn.functional.avg_pool2d(contrib[:, None], 2, stride=1)[:, 0] * 4  # (3, 7, 7)
    total = nn.functional.pad(window_sum, (1, 1, 1, 1))
    total = total.unfold(1, 2, 1).unfold(2, 2, 1).sum(dim=(-1, -2))  # sum over covering windows
    count = torch.ones(7, 7)
    count = nn.functional.pad(count, (1, 1, 1, 1)).unfold(0, 2, 1).unfold(1, 2, 1).sum((-1, -2))
    torch.testing.assert_close(r.maps, total / count, **tol)


def test_occlusion_stride_larger_than_window_leaves_uncovered_pixels_zero():
    model = TinyCNN().eval()
    out, _ = run_method("occlusion", model, tiny_input(2, 16), window=2, stride=4)
    covered = torch.zeros(16, 16, dtype=torch.bool)
    for r in range(0, 16, 4):
        for c in range(0, 16, 4):
            covered[r : r + 2, c : c + 2] = True
    assert bool((out.maps[:, ~covered] == 0).all())
    assert bool((out.maps[:, covered] != 0).any())
    assert out.extras["windows"] == 16


@pytest.mark.parametrize(
    "options",
    [{"window": 0}, {"window": (4, 4, 4)}, {"stride": 1.5}, {"batch_size": 0}, {"baseline": None}],
    ids=str,
)
def test_occlusion_rejects_bad_options(options):
    with pytest.raises(convscope.MethodError):
        run_method("occlusion", TinyCNN().eval(), tiny_input(2, 16), **options)
