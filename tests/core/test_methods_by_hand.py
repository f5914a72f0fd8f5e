"""Saliency and Grad-CAM on models small enough to compute the answer by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import convscope
from tests.helpers import LinearImage


class GapHead(nn.Module):
    """1x1 conv (K=2 channels) -> GAP -> linear: dy_c/dA_k = W_ck / (h w) at every position."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1, bias=False)
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, -1.0]]).view(2, 3, 1, 1))
            self.fc.weight.copy_(torch.tensor([[2.0, -1.0], [-0.5, 3.0]]))

    def forward(self, x):
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def test_saliency_of_a_linear_model_is_max_abs_weight():
    m = LinearImage((3, 4, 4), bias=False)
    x = torch.randn(3, 3, 4, 4)
    r = convscope.explain(m, x, method="saliency", target=[0, 2, 1])
    for i, c in enumerate([0, 2, 1]):
        expected = m.fc.weight[c].view(3, 4, 4).abs().amax(dim=0)
        torch.testing.assert_close(r.maps[i], expected, rtol=0, atol=1e-6)
    assert r.targets == [0, 2, 1]


def test_gradcam_on_a_gap_head_by_hand():
    m = GapHead()
    x = torch.randn(2, 3, 4, 4)
    r = convscope.explain(m, x, method="gradcam", layer="conv", target=[0, 1])
    a = m.conv(x).detach()  # (2, 2, 4, 4)
    for i, c in enumerate([0, 1]):
        alpha = m.fc.weight[c] / 16.0  # mean over 4x4 of dy_c/dA_k
        expected = (alpha.view(2, 1, 1) * a[i]).sum(0).clamp_min(0)
        torch.testing.assert_close(r.raw_maps[i], expected, rtol=1e-6, atol=1e-7)
    # the scores are the logits of the targets
    torch.testing.assert_close(r.scores, m(x).detach().gather(1, torch.tensor([[0], [1]]))[:, 0])


def test_gradcam_upsamples_bilinearly_without_corner_alignment():
    m = GapHead()
    x = torch.randn(1, 3, 4, 4)
    r = convscope.explain(m, x, method="gradcam", layer="conv")
    same = F.interpolate(r.raw_maps[:, None], size=(4, 4), mode="bilinear", align_corners=False)
    torch.testing.assert_close(r.maps, same[:, 0])


def test_batched_equals_one_by_one(tiny, tiny_x):
    targets = [0, 3, 1, 4]
    for method in ("saliency", "gradcam"):
        whole = convscope.explain(tiny, tiny_x, method=method, target=targets)
        halves = convscope.explain(tiny, tiny_x, method=method, target=targets, batch_size=1)
        torch.testing.assert_close(whole.maps, halves.maps, rtol=1e-5, atol=1e-6)
        assert whole.targets == targets


@pytest.mark.parametrize("score", ["prob", "logprob"])
def test_score_option_changes_the_differentiated_quantity(score):
    m = LinearImage((3, 4, 4), bias=False)
    x = torch.randn(1, 3, 4, 4, requires_grad=True)
    r = convscope.explain(m, x.detach(), method="saliency", target=1, score=score)
    out = m(x)
    s = out.softmax(1) if score == "prob" else out.log_softmax(1)
    (g,) = torch.autograd.grad(s[0, 1], x)
    torch.testing.assert_close(r.maps[0], g[0].abs().amax(0))


def test_callable_target():
    m = LinearImage((3, 4, 4), bias=False)
    x = torch.randn(2, 3, 4, 4)
    r = convscope.explain(m, x, method="saliency", target=lambda out: out[:, 0] + out[:, 1])
    expected = (m.fc.weight[0] + m.fc.weight[1]).view(3, 4, 4).abs().amax(0)
    torch.testing.assert_close(r.maps[1], expected)
    assert r.targets is None


def test_several_layers_are_fused_by_max_of_normalized_maps(tiny, tiny_x):
    targets = [0, 1, 2, 3]
    a = convscope.explain(tiny, tiny_x, layer="conv3", target=targets).maps
    b = convscope.explain(tiny, tiny_x, layer="act@1", target=targets).maps
    both = convscope.explain(tiny, tiny_x, layer=["conv3", "act@1"], target=targets)
    peak = lambda m: m.flatten(1).amax(1).clamp_min(1e-30)[:, None, None]  # noqa: E731
    torch.testing.assert_close(both.maps, torch.maximum(a / peak(a), b / peak(b)))
    assert both.layer == "conv3, act@1"
