"""Deletion / insertion curves and AUC, Average Drop / Increase in Confidence, and evaluate(),
against slow obvious loops and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

import convscope
from convscope.core.bundle import ModelBundle, Preprocess
from convscope.core.guard import fingerprints_equal, model_fingerprint
from convscope.errors import ConvscopeError
from convscope.metrics import (
    average_drop_increase,
    deletion,
    evaluate,
    gaussian_blur,
    insertion,
    pixel_ranks,
)
from tests.models import TinyCNN, tiny_input


class SumModel(nn.Module):
    """logits = [sum of the input, 0]: class 0's probability is sigmoid(sum)."""

    def forward(self, x):
        s = x.flatten(1).sum(dim=1)
        return torch.stack([s, torch.zeros_like(s)], dim=1)


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def slow_curve(model, x, m, target, steps, baseline, insert):
    """One image at a time, one pixel at a time: the definition, spelled out."""
    c, h, w = x.shape
    pixels = [(i // w, i % w) for i in range(h * w)]
    order = sorted(range(h * w), key=lambda i: (-float(m[pixels[i]]), i))
    curve = []
    for k in range(steps + 1):
        count = k * h * w // steps
        img = baseline.clone() if insert else x.clone()
        for i in order[:count]:
            r, col = pixels[i]
            img[:, r, col] = x[:, r, col] if insert else baseline[:, r, col]
        with torch.no_grad():
            curve.append(float(model(img[None]).softmax(dim=1)[0, target]))
    auc = sum((curve[k] + curve[k + 1]) / 2 / steps for k in range(steps))
    return curve, auc


def hand_map(n: int = 3, size: int = 16) -> torch.Tensor:
    """A hand-made map with many ties (values on a coarse grid) and negative values."""
    g = torch.Generator().manual_seed(7)
    return torch.randint(-2, 4, (n, size, size), generator=g).float()


@pytest.mark.parametrize("kind", ["deletion", "insertion"])
def test_curves_match_a_slow_reference_on_tinycnn(kind):
    model = TinyCNN()
    x = tiny_input(3)
    m = hand_map(3)
    targets = [0, 3, 4]
    steps = 7  # 256 pixels do not split evenly: chunks of 36 or 37
    fn = deletion if kind == "deletion" else insertion
    base_spec = 0.25 if kind == "deletion" else "blur"
    got = fn(model, x, m, targets, steps=steps, baseline=base_spec, sigma=2.0, batch_size=5)
    base = torch.full_like(x, 0.25) if kind == "deletion" else gaussian_blur(x, 2.0)
    assert got.curves.shape == (3, steps + 1) and got.targets == targets
    assert torch.allclose(got.fractions, torch.arange(steps + 1) / steps)
    for i in range(3):
        curve, auc = slow_curve(model, x[i], m[i], targets[i], steps, base[i], kind == "insertion")
        assert got.curves[i].tolist() == pytest.approx(curve, abs=1e-6)
        assert float(got.auc[i]) == pytest.approx(auc, abs=1e-6)
    assert got.mean_auc == pytest.approx(float(got.auc.mean()))


def test_deletion_and_insertion_auc_of_a_linear_model_by_hand():
    # One 2x2 image with pixels 4, 3, 2, 1 and the map equal to the pixels: deletion removes 4,
    # then 3, ... so the logit goes 10, 6, 3, 1, 0; insertion from 0 goes 0, 4, 7, 9, 10.
    x = torch.tensor([[[[4.0, 3.0], [2.0, 1.0]]]])
    m = x[:, 0].clone()
    d = deletion(SumModel(), x, m, 0, steps=4, baseline=0.0)
    want = [sigmoid(v) for v in (10, 6, 3, 1, 0)]
    assert d.curves[0].tolist() == pytest.approx(want, abs=1e-6)
    auc = (want[0] / 2 + want[1] + want[2] + want[3] + want[4] / 2) / 4
    assert float(d.auc[0]) == pytest.approx(auc, abs=1e-6)
    ins = insertion(SumModel(), x, m, 0, steps=4, baseline="constant")  # 0 for a bare module
    want = [sigmoid(v) for v in (0, 4, 7, 9, 10)]
    assert ins.curves[0].tolist() == pytest.approx(want, abs=1e-6)
    # the reversed map deletes the smallest pixels first: a worse (higher) deletion AUC
    worse = deletion(SumModel(), x, -m, 0, steps=4, baseline=0.0)
    assert float(worse.auc[0]) > float(d.auc[0])


def test_ties_are_broken_by_pixel_index():
    m = torch.tensor([[[1.0, 3.0], [3.0, 1.0]]])
    assert pixel_ranks(m).tolist() == [[2, 0, 1, 3]]


def test_constant_baseline_is_the_black_image_when_the_preprocess_is_known():
    pre = Preprocess(resize=2, crop=2, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5), scale=1 / 255)
    bundle = ModelBundle(SumModel(), preprocess=pre)
    x = tiny_input(1, size=2)
    m = torch.ones(1, 2, 2)
    d = deletion(bundle, x, m, 0, steps=1)
    black = (torch.zeros(3) - torch.tensor(pre.mean)) / torch.tensor(pre.std)
    assert float(d.curves[0, 1]) == pytest.approx(sigmoid(4 * float(black.sum())), abs=1e-6)
    # a bare nn.Module: the default preprocess is a guess, so the baseline is 0
    d = deletion(SumModel(), x, m, 0, steps=1)
    assert float(d.curves[0, 1]) == pytest.approx(0.5)


def test_gaussian_blur_matches_scipy_and_keeps_constants():
    x = tiny_input(2, size=13)
    got = gaussian_blur(x, sigma=1.5, size=7)
    t = np.arange(7) - 3
    k = np.exp(-(t**2) / (2 * 1.5**2))
    k2 = np.outer(k, k) / k.sum() ** 2
    for i in range(2):
        for c in range(3):
            ref = ndimage.correlate(x[i, c].double().numpy(), k2, mode="nearest")
            assert np.allclose(got[i, c].numpy(), ref, atol=1e-5)
    const = torch.full((1, 3, 5, 5), 0.7)
    assert torch.allclose(gaussian_blur(const, 5.0, 11), const)


def test_average_drop_and_increase_in_confidence_by_hand():
    x = torch.stack(
        [
            torch.full((1, 2, 2), 2.0),  # sum 8
            torch.full((1, 2, 2), -1.0),  # sum -4
            torch.full((1, 2, 2), 1.0),  # sum 4
        ]
    )
    maps = torch.tensor(
        [
            [[2.0, 1.0], [0.0, -3.0]],  # ReLU, / 2 -> [[1, .5], [0, 0]]: masked sum 2 * 1.5 = 3
            [[5.0, 0.0], [0.0, 0.0]],  # -> one pixel kept: masked sum -1 > -4: an increase
            [[0.0, 0.0], [0.0, -1.0]],  # nothing positive: masked = baseline 0, sum 0
        ]
    )
    r = average_drop_increase(SumModel(), x, maps, 0)
    y = [sigmoid(8), sigmoid(-4), sigmoid(4)]
    o = [sigmoid(3), sigmoid(-1), sigmoid(0)]
    assert r.original.tolist() == pytest.approx(y, abs=1e-6)
    assert r.masked.tolist() == pytest.approx(o, abs=1e-6)
    drops = [100 * max(0.0, a - b) / a for a, b in zip(y, o)]
    assert r.drop.tolist() == pytest.approx(drops, rel=1e-5)
    assert r.average_drop == pytest.approx(sum(drops) / 3, rel=1e-5)
    assert r.increase_in_confidence == pytest.approx(100 / 3)


def test_average_drop_masks_the_pixels_when_the_preprocess_is_known():
    pre = Preprocess(resize=4, crop=4, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5), scale=1 / 255)
    bundle = ModelBundle(SumModel(), preprocess=pre)
    pixels = torch.randint(0, 256, (1, 4, 4, 3), generator=torch.Generator().manual_seed(3))
    x = pre.normalize(pixels)
    m = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(4))
    r = average_drop_increase(bundle, x, m, 0)
    masked_pixels = pixels.float() * (m / m.max())[..., None]  # multiply the pixels (0..255)
    xm = pre.normalize(masked_pixels)  # normalize accepts floats too
    assert float(r.masked[0]) == pytest.approx(sigmoid(float(xm.sum())), abs=1e-5)


def test_metrics_leave_the_model_unchanged_and_accept_an_explanation():
    model = TinyCNN()
    model.train()
    before = model_fingerprint(model)
    x = tiny_input(2)
    e = convscope.explain(model, x, "gradcam", target=[1, 2])
    d = deletion(model, x, e, steps=4)
    ins = insertion(model, x, e, steps=4)
    a = average_drop_increase(model, x, e)
    assert d.targets == ins.targets == a.targets == [1, 2]  # the explanation's targets
    assert fingerprints_equal(before, model_fingerprint(model)) and model.training


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda m, x: deletion(m, x, torch.zeros(2, 8, 8)), "maps must have shape"),
        (lambda m, x: deletion(m, x, torch.zeros(2, 16, 16), steps=0), "steps must be"),
        (
            lambda m, x: insertion(m, x, torch.zeros(2, 16, 16), baseline="noise"),
            "unknown baseline",
        ),
        (lambda m, x: insertion(m, x, torch.zeros(2, 16, 16), baseline=torch.zeros(2)), "baseline"),
        (lambda m, x: deletion(m, x, torch.zeros(2, 16, 16), batch_size=0), "batch_size"),
        (lambda m, x: average_drop_increase(m, x, torch.zeros(3, 16, 16)), "maps must have shape"),
        (lambda m, x: deletion(m, x, torch.full((2, 16, 16), math.nan)), "NaN"),
        (lambda m, x: evaluate(m, x, ["gradcam"], steps=0), "steps must be"),
    ],
)
def test_bad_input_is_a_one_line_error(call, message):
    with pytest.raises(ConvscopeError, match=message) as err:
        call(TinyCNN(), tiny_input(2))
    assert "\n" not in str(err.value)


def test_evaluate_rows_equal_the_separate_metrics():
    model = TinyCNN()
    x = tiny_input(3)
    rows = evaluate(model, x, ["gradcam", "saliency"], target="top2", steps=5, batch_size=7)
    assert [r["method"] for r in rows] == ["gradcam", "saliency"]
    for row in rows:
        e = convscope.explain(model, x, row["method"], target="top2")
        d = deletion(model, x, e, steps=5)
        ins = insertion(model, x, e, steps=5)
        a = average_drop_increase(model, x, e)
        assert row["deletion_auc"] == pytest.approx(d.mean_auc, abs=1e-6)
        assert row["insertion_auc"] == pytest.approx(ins.mean_auc, abs=1e-6)
        assert row["average_drop"] == pytest.approx(a.average_drop, abs=1e-4)
        assert row["increase_in_confidence"] == pytest.approx(a.increase_in_confidence)
        assert row["n_images"] == 3 and row["seconds"] > 0
    assert rows[0]["layer"] == "relu6" and rows[1]["layer"] is None


def test_evaluate_passes_method_options():
    model = TinyCNN()
    x = tiny_input(2)
    opts = {"occlusion": {"window": 8, "stride": 8}}
    (row,) = evaluate(model, x, ["occlusion"], steps=4, options=opts)
    e = convscope.explain(model, x, "occlusion", window=8, stride=8)
    assert row["deletion_auc"] == pytest.approx(deletion(model, x, e, steps=4).mean_auc, abs=1e-6)
    with pytest.raises(convscope.MethodError, match="n_samples must be a positive integer"):
        evaluate(model, x, ["smoothgrad"], options={"smoothgrad": {"n_samples": 0}})
    # a method's own batch_size bounds its passes (the call's batch_size bounds the metrics')
    sizes: list[int] = []
    handle = model.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    try:
        opts["occlusion"]["batch_size"] = 3
        (again,) = evaluate(model, x, ["occlusion"], steps=4, options=opts, batch_size=64)
    finally:
        handle.remove()
    assert sizes[:4] == [2, 3, 3, 2]  # the clean batch, then 2 x 4 occluded copies by 3
    assert again["deletion_auc"] == pytest.approx(row["deletion_auc"], abs=1e-6)
