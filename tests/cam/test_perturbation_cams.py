"""The many-pass CAM methods: Score-CAM (masked inputs) and Ablation-CAM (zeroed channels).

Score-CAM: parity with torchcam's ``ScoreCAM`` where torchcam follows the paper (a layer at the
input's resolution: torchcam normalizes each channel *before* upsampling it, the paper after), and
with a reference written here from the paper (upsample, min-max normalize, mask, score, softmax
over channels) on TinyCNN and on EfficientNet-Lite0.

Ablation-CAM: against brute force -- the full model re-run with the channel zeroed, by hand on
TinyCNN and through ``core.tail.substitute`` (on a copy) on Lite0 -- and, at Lite0's head
(global average pooling + linear), against the closed form y - y_k = w_ck mean(A_k).
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from torchcam.methods import ScoreCAM

import convscope
from convscope.core.layers import resolve_layer
from convscope.core.tail import substitute
from convscope.errors import MethodError
from tests.helpers import LITE0_CAM_TARGETS, TINY_TARGETS, layer_grads, run_method
from tests.models import TinyCNN, tiny_input
from tests.reference import assert_no_hooks, assert_parity, reference_copy

SLOW = os.environ.get("CONVSCOPE_SLOW_TESTS") == "1"


# -- Score-CAM ---------------------------------------------------------------------------------
def scorecam_reference(model, x, acts, score_fn, chunk: int = 64):
    """Wang et al. 2020, Algorithm 1, image by image and channel by channel: H_k = s(Up(A_k)),
    score S(X * H_k), alpha = softmax_k(S), map = ReLU(sum_k alpha_k A_k).
    ``score_fn(output, i)`` reads image ``i``'s score from the output of masked copies."""
    ref = reference_copy(model)
    n, k = acts.shape[:2]
    scores = torch.zeros(n, k, dtype=torch.float64)
    with torch.no_grad():
        for i in range(n):
            masks = []
            for c in range(k):
                up = F.interpolate(
                    acts[i, c][None, None], size=x.shape[-2:], mode="bilinear", align_corners=False
                )[0, 0]
                lo, hi = up.min(), up.max()
                masks.append((up - lo) / (hi - lo) if hi > lo else torch.zeros_like(up))
            masked = x[i][None] * torch.stack(masks)[:, None]
            for s in range(0, k, chunk):
                scores[i, s : s + chunk] = score_fn(ref(masked[s : s + chunk]), i).double()
    weights = scores.softmax(dim=1)
    cam = torch.relu(torch.einsum("nk,nkhw->nhw", weights, acts.double()))
    return cam, scores


def logit_of(targets):
    return lambda out, i: out[:, targets[i]]


def test_scorecam_matches_torchcam_at_input_resolution():
    """At ``conv1`` (32x32 on a 32x32 input) nothing is upsampled, so torchcam's order
    (normalize, then upsample) and the paper's agree."""
    model, x = TinyCNN().eval(), tiny_input(4, 32)
    ours = convscope.explain(model, x, method="scorecam", target=TINY_TARGETS, layer="conv1")
    assert ours.raw_maps.shape == (4, 32, 32)
    ref = reference_copy(model)
    with ScoreCAM(ref, target_layer="conv1", batch_size=5) as extractor:
        ref(x.clone())
        (cam,) = extractor(class_idx=TINY_TARGETS, normalized=False)
    assert_no_hooks(ref)
    assert_parity(ours.raw_maps, cam, "scorecam raw vs torchcam [tiny conv1]")
    assert_no_hooks(model)


@pytest.mark.parametrize("layer", ["conv3", "relu6"])
def test_scorecam_matches_paper_reference_tiny(layer):
    model, x = TinyCNN().eval(), tiny_input(4, 32)
    out, _ = run_method("scorecam", model, x, TINY_TARGETS, [layer], batch_size=7)
    acts, _ = layer_grads(model, layer, x, TINY_TARGETS)
    cam, scores = scorecam_reference(model, x, acts, logit_of(TINY_TARGETS))
    assert_parity(out.maps[0], cam, f"scorecam raw vs paper [tiny {layer}]")
    assert_parity(out.extras["scores"][0], scores, f"scorecam masked scores [tiny {layer}]")
    # the masked batches do not change the answer
    whole, _ = run_method("scorecam", model, x, TINY_TARGETS, [layer], batch_size=10_000)
    assert_parity(whole.maps[0], cam, f"scorecam raw, one batch [tiny {layer}]")


def test_scorecam_callable_target_and_score():
    model, x = TinyCNN().eval(), tiny_input(4, 32)
    fn = lambda out: out[:, 1] - out[:, 2]  # noqa: E731
    out, _ = run_method(
        "scorecam", model, x, fn, ["conv3"], batch_size=6
    )  # rounded to whole copies
    acts, _ = layer_grads(model, "conv3", x, TINY_TARGETS)
    cam, _ = scorecam_reference(model, x, acts, lambda o, i: o[:, 1] - o[:, 2])
    assert_parity(out.maps[0], cam, "scorecam raw, callable target")
    out, _ = run_method("scorecam", model, x, TINY_TARGETS, ["conv3"], score="prob")
    probs = lambda o, i: o.softmax(dim=1)[:, TINY_TARGETS[i]]  # noqa: E731
    cam, _ = scorecam_reference(model, x, acts, probs)
    assert_parity(out.maps[0], cam, "scorecam raw, score='prob'")


def test_scorecam_lite0_matches_paper_reference(lite0, lite0_x):
    """``_blocks.15`` (320 channels, 7x7 -> 224x224), every mask: the espresso photo (all four
    photos with CONVSCOPE_SLOW_TESTS=1; each photo costs 2 x 320 forward passes)."""
    n = 4 if SLOW else 1
    x, targets = lite0_x[:n], LITE0_CAM_TARGETS[:n]
    out, _ = run_method("scorecam", lite0.model, x, targets, ["_blocks.15"], batch_size=64)
    acts, _ = layer_grads(lite0.model, "_blocks.15", x, targets)
    cam, scores = scorecam_reference(lite0.model, x, acts, logit_of(targets))
    assert_parity(out.maps[0], cam, "scorecam raw vs paper [lite0 _blocks.15]")
    assert_parity(out.extras["scores"][0], scores, "scorecam masked scores [lite0 _blocks.15]")
    assert torch.equal(out.output.argmax(dim=1)[:1], torch.tensor([967]))
    assert_no_hooks(lite0.model)


# -- Ablation-CAM ------------------------------------------------------------------------------
def tiny_by_hand(model: TinyCNN, x: torch.Tensor, layer: str, channel: int | None = None):
    """(the layer's output, model output with that output's ``channel`` set to 0), by hand."""
    m = reference_copy(model)
    kept = {}

    def at(name, a):
        if name != layer:
            return a
        kept["a"] = a.clone()
        if channel is not None:
            a = a.clone()
            a[:, channel] = 0
        return a

    with torch.no_grad():
        a = at("conv1", m.conv1(x))
        a = m.act(a)
        a = at("conv2", m.conv2(a))
        a = m.act(m.relu_inplace(a))  # in place, right after conv2
        a = at("conv3", m.conv3(a))
        a = at("relu6", m.relu6(a))
        out = m.fc(m.pool(a).flatten(1))
    return kept["a"], out


@pytest.mark.parametrize("layer", ["conv2", "conv3", "relu6"])
def test_ablationcam_matches_brute_force_tiny(layer):
    model, x = TinyCNN().eval(), tiny_input(4, 32)
    ours, _ = run_method("ablationcam", model, x, TINY_TARGETS, [layer])
    acts, out = tiny_by_hand(model, x, layer)
    torch.testing.assert_close(out, model(x), rtol=0, atol=0)
    idx = torch.tensor(TINY_TARGETS)[:, None]
    y = out.gather(1, idx)
    drops = []
    for k in range(acts.shape[1]):
        yk = tiny_by_hand(model, x, layer, k)[1].gather(1, idx)
        drops.append((y - yk) / y)
    w = torch.cat(drops, dim=1)
    ref = torch.relu(torch.einsum("nk,nkhw->nhw", w, acts))
    assert_parity(ours.extras["weights"][0], w, f"ablationcam weights vs brute force [{layer}]")
    assert_parity(ours.maps[0], ref, f"ablationcam raw vs brute force [{layer}]")
    assert ours.extras["split"] == [True]
    assert_no_hooks(model)


class Untraceable(TinyCNN):
    """TinyCNN whose forward has data-dependent Python control flow (torch.fx cannot trace it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if float(x.abs().sum()) < 0:  # never true
            x = -x
        return super().forward(x)


def test_ablationcam_without_a_traced_tail_gives_the_same_maps():
    model, x = Untraceable().eval(), tiny_input(4, 32)
    plain = TinyCNN().eval()
    ours, _ = run_method("ablationcam", model, x, TINY_TARGETS, ["conv2"])
    ref, _ = run_method("ablationcam", plain, x, TINY_TARGETS, ["conv2"])
    assert ours.extras["split"] == [False] and ref.extras["split"] == [True]
    assert_parity(ours.maps[0], ref.maps[0], "ablationcam, tail by substitution vs traced tail")
    assert_no_hooks(model)


def substitute_scores(model, x, layer, acts, channels, targets):
    """Scores of the full model re-run with each channel of the layer's output zeroed
    (``core.tail.substitute`` on a copy): (N, len(channels))."""
    ref = reference_copy(model)
    refl = resolve_layer(ref, layer)
    idx = torch.tensor(targets)[:, None]
    cols = []
    with torch.no_grad():
        for k in channels:
            a = acts.clone()
            a[:, k] = 0
            with substitute(ref, refl, a):
                cols.append(ref(x.clone()).gather(1, idx))
    assert_no_hooks(ref)
    return torch.cat(cols, dim=1)


def test_ablationcam_lite0_head_matches_closed_form_and_brute_force(lite0, lite0_x):
    x, targets = lite0_x[:2], LITE0_CAM_TARGETS[:2]
    # one copy of the batch per tail pass: the same arithmetic as the brute force below
    ours, _ = run_method("ablationcam", lite0.model, x, targets, ["_swish@1"], batch_size=2)
    ref = reference_copy(lite0.model)
    with torch.no_grad():
        acts = ref.extract_features(x.clone())  # the head's ReLU6, _swish@1
        y = ref(x.clone()).gather(1, torch.tensor(targets)[:, None])
    # GAP + linear: zeroing channel k lowers y_c by w_ck * mean(A_k)
    w = ref._fc.weight[targets] * acts.mean(dim=(2, 3)) / y
    cam = torch.relu(torch.einsum("nk,nkhw->nhw", w, acts))
    assert_parity(ours.maps[0], cam, "ablationcam raw vs closed form [lite0 _swish@1]")
    brute = (y - substitute_scores(lite0.model, x, "_swish@1", acts, range(8), targets)) / y
    # w_k = 1 - y_k / y is a small difference of two float32 scores (about 1e-7 apart after
    # rounding): measure its error against the image's largest weight (the map's scale), not
    # against the largest of the 8 checked here, which can be 25x smaller
    err = (ours.extras["weights"][0][:, :8] - brute).abs().amax(dim=1) / w.abs().amax(dim=1)
    print(f"PARITY ablationcam weights[:8] vs brute force: max |dw| / max |w| = {err.max():.2e}")
    assert bool((err <= 1e-5).all()), err.tolist()
    # many ablated copies per pass (the default): the same weights up to float32 rounding of the
    # scores (w = 1 - y_k / y, so an error of e * |y| in y_k is an error of e in w)
    batched, _ = run_method("ablationcam", lite0.model, x, targets, ["_swish@1"])
    err = (batched.extras["weights"][0] - ours.extras["weights"][0]).abs().max().item()
    print(f"PARITY ablationcam batched vs one copy per pass: max |dw| = {err:.2e}")
    assert err <= 1e-5
    assert_no_hooks(lite0.model)


def test_ablationcam_lite0_block_matches_brute_force(lite0, lite0_x):
    x, targets = lite0_x[:2], LITE0_CAM_TARGETS[:2]
    ours, _ = run_method("ablationcam", lite0.model, x, targets, ["_blocks.15"], batch_size=2)
    assert ours.extras["split"] == [True]
    acts, _ = layer_grads(lite0.model, "_blocks.15", x, targets)
    with torch.no_grad():
        y = reference_copy(lite0.model)(x.clone()).gather(1, torch.tensor(targets)[:, None])
    brute = (y - substitute_scores(lite0.model, x, "_blocks.15", acts, range(8), targets)) / y
    assert_parity(ours.extras["weights"][0][:, :8], brute, "ablationcam weights[:8] [_blocks.15]")
    assert_no_hooks(lite0.model)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_scorecam_rejects_a_bad_batch_size(bad):
    model = TinyCNN().eval()
    with pytest.raises(MethodError, match="batch_size must be a positive integer"):
        run_method("scorecam", model, tiny_input(2, 32), [0, 1], ["conv3"], batch_size=bad)
    assert_no_hooks(model)
