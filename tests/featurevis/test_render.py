"""The optimization loop by hand on a linear model, batching and reproducibility on TinyCNN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

import convscope
from convscope.featurevis import custom
from convscope.featurevis.render import pixel_space
from tests.featurevis.helpers import CENTER, SPREAD, linear_bundle
from tests.models import TinyCNN

C = 2  # the class optimized


def _grad(bundle, c=C):
    """d logit_c / d display pixel: W_c / spread, as a (3, 4, 4) image."""
    return bundle.model.fc.weight[c].detach().reshape(3, 4, 4) / SPREAD


def _run(bundle, steps, **kw):
    kw.setdefault("size", 4)
    return convscope.visualize(bundle, f"class:{C}", steps=steps, **kw)


def test_plain_ascent_step_by_hand():
    b = linear_bundle()
    g = _grad(b)
    r = _run(b, 1, param="pixels", optimizer="ascent", step="plain", lr=0.01, transforms="none")
    torch.testing.assert_close(r.images[0], CENTER + 0.01 * g)
    # the trace holds the objective before the step: the mean image is input 0, the logit is b_c
    assert float(r.trace[0, 0]) == pytest.approx(2.0)
    # the final value is the logit on the final image: b_c + W_c . (delta / spread)
    expected = 2.0 + 0.01 * float(g.square().sum()) * 1.0
    assert float(r.values[0]) == pytest.approx(expected, rel=1e-5)
    assert r.options["init"] == "zeros"


def test_normalized_ascent_steps_by_hand():
    """The notes' trick: x <- x + lr * g / ||g||, so two steps move the image by 2 lr along g."""
    b = linear_bundle()
    g = _grad(b)
    r = _run(
        b, 2, param="pixels", optimizer="ascent", step="normalized", lr=0.05, transforms="none"
    )
    torch.testing.assert_close(r.images[0], CENTER + 2 * 0.05 * g / g.norm())
    assert float((r.images[0] - CENTER).norm()) == pytest.approx(0.1, rel=1e-5)


def test_simonyan_l2_penalty_steps_by_hand():
    """Simonyan: maximize S_c(I) - lambda ||I||^2: step 2 feels the penalty of step 1's image."""
    b = linear_bundle()
    g = _grad(b)
    lr, lam = 0.01, 0.7
    r = _run(b, 2, preset="simonyan", lr=lr, l2=lam)
    d1 = lr * g
    d2 = d1 + lr * (g - 2 * lam * d1)
    torch.testing.assert_close(r.images[0], CENTER + d2)
    assert r.options["l2"] == lam and r.options["step"] == "plain"


def test_progress_rule_and_decay_by_hand():
    """Yosinski's 'progress' rate min(lr, p / ||g||^2), then the decay x <- (1 - d) x."""
    b = linear_bundle()
    g = _grad(b)
    p, d = 0.3, 0.25
    r = _run(
        b,
        1,
        param="pixels",
        optimizer="ascent",
        step="progress",
        gain=p,
        lr=10.0,
        decay=d,
        transforms="none",
    )
    rate = min(10.0, p / float(g.square().sum()))
    torch.testing.assert_close(r.images[0], CENTER + (1 - d) * rate * g)


def test_input_units_step_by_hand():
    """lr_units='input': the step is taken on the model's input, x_in <- x_in + lr * g_in with
    g_in = SPREAD * g (chain rule), so in display pixels it is SPREAD^2 * lr * g; the normalized
    rule moves the input by lr (the display image by SPREAD * lr); an uncapped progress step
    raises the linear logit by `gain` in either units."""
    b = linear_bundle()
    g = _grad(b)
    kw = {"param": "pixels", "optimizer": "ascent", "transforms": "none", "lr_units": "input"}
    r = _run(b, 1, step="plain", lr=0.01, **kw)
    torch.testing.assert_close(r.images[0], CENTER + SPREAD**2 * 0.01 * g)
    r = _run(b, 1, step="normalized", lr=0.05, **kw)
    torch.testing.assert_close(r.images[0], CENTER + SPREAD * 0.05 * g / g.norm())
    assert float(r.inputs[0].norm()) == pytest.approx(0.05, rel=1e-5)
    for units in ("input", "display"):
        r = _run(b, 1, step="progress", lr=1e6, gain=0.3, **{**kw, "lr_units": units})
        torch.testing.assert_close(r.images[0], CENTER + 0.3 * g / g.square().sum())
        assert float(r.values[0]) == pytest.approx(2.0 + 0.3, rel=1e-5)


def test_blur_and_clipping_in_the_loop_match_numpy():
    b = linear_bundle()
    g = _grad(b)
    lr = 0.01
    r = _run(
        b,
        1,
        param="pixels",
        optimizer="ascent",
        lr=lr,
        step="plain",
        blur_sigma=0.8,
        blur_every=1,
        transforms="none",
    )
    ref = np.stack([gaussian_filter((lr * g)[c].double().numpy(), 0.8) for c in range(3)])
    torch.testing.assert_close(r.images[0].double(), CENTER + torch.from_numpy(ref))
    r = _run(
        b,
        1,
        param="pixels",
        optimizer="ascent",
        lr=lr,
        step="plain",
        clip_norm=50,
        transforms="none",
    )
    delta = (lr * g).numpy()
    norms = np.linalg.norm(delta, axis=0)
    ref = delta * (norms >= np.percentile(norms, 50))[None]
    torch.testing.assert_close(r.images[0], CENTER + torch.from_numpy(ref).float())
    assert int(((r.images[0] - CENTER).abs().sum(0) == 0).sum()) == 8


def test_adam_first_step_is_lr_times_sign():
    b = linear_bundle()
    g = _grad(b)
    r = _run(b, 1, param="pixels", optimizer="adam", lr=0.02, transforms="none")
    torch.testing.assert_close(r.images[0], CENTER + 0.02 * g.sign(), atol=1e-6, rtol=0)


def test_pixels_stay_in_range():
    b = linear_bundle()
    r = _run(b, 3, param="pixels", optimizer="ascent", step="plain", lr=100.0, transforms="none")
    assert float(r.images.min()) == 0.0 and float(r.images.max()) == 1.0
    g = _grad(b)
    torch.testing.assert_close(r.images[0], (g > 0).float())


def test_values_and_inputs_are_what_the_model_sees():
    b = linear_bundle()
    r = _run(b, 3, preset="lucid")
    torch.testing.assert_close(r.inputs, (r.images - CENTER) / SPREAD)
    logits = b.model(r.inputs)
    torch.testing.assert_close(r.values, logits[:, C].detach())
    torch.testing.assert_close(r.output, logits.detach())


OBJECTIVES = ["class:3", "channel:conv3:5", "neuron:conv2:1", "neuron:act@1:2:1:6"]


def test_a_list_is_one_batch_equal_to_separate_runs():
    """One batched run of several objectives (lucid: Fourier, colour, transforms, Adam) gives each
    objective the image its own run gives, with the same seed."""
    model = TinyCNN()
    kw = {"steps": 6, "size": 16, "preset": "lucid", "seed": 3}
    batched = convscope.visualize(model, OBJECTIVES, **kw)
    assert batched.images.shape == (4, 3, 16, 16) and batched.trace.shape == (6, 4)
    for i, obj in enumerate(OBJECTIVES):
        alone = convscope.visualize(model, obj, **kw)
        torch.testing.assert_close(batched.images[i], alone.images[0], atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(batched.trace[:, i], alone.trace[:, 0], atol=2e-4, rtol=1e-4)
    assert batched.objectives == OBJECTIVES
    # the objective changed the image: images of different objectives differ
    assert float((batched.images[0] - batched.images[1]).abs().max()) > 1e-3


def test_copies_differ_and_match_separate_runs():
    model = TinyCNN()
    kw = {"steps": 4, "size": 16, "seed": 0}
    two = convscope.visualize(model, ["class:1", "class:2"], batch=2, **kw)
    assert two.objectives == ["class:1", "class:1", "class:2", "class:2"]
    assert two.copy == [0, 1, 0, 1]
    assert float((two.images[0] - two.images[1]).abs().max()) > 1e-3  # own starts and transforms
    alone = convscope.visualize(model, "class:2", batch=2, **kw)
    torch.testing.assert_close(two.images[2:], alone.images, atol=2e-5, rtol=1e-4)


def test_reproducible_and_seeded():
    model = TinyCNN()
    kw = {"steps": 5, "size": 16}
    a = convscope.visualize(model, "channel:conv3:1", seed=7, **kw)
    b = convscope.visualize(model, "channel:conv3:1", seed=7, **kw)
    c = convscope.visualize(model, "channel:conv3:1", seed=8, **kw)
    assert torch.equal(a.images, b.images) and torch.equal(a.trace, b.trace)
    assert not torch.allclose(a.images, c.images)


def test_ascent_raises_a_channel_of_tinycnn():
    model = TinyCNN()
    r = convscope.visualize(model, "channel:conv3:5", steps=30, size=16, preset="fooling", lr=0.5)
    assert float(r.trace[-1, 0]) > float(r.trace[0, 0]) + 1.0


def test_yosinski_makes_four_images_with_the_papers_settings():
    model = TinyCNN()
    r = convscope.visualize(model, "class:2", steps=3, size=16, preset="yosinski")
    assert len(r) == 4 and r.copy == [0, 1, 2, 3]
    assert r.options["decay"] == (0.0, 0.3, 0.0001, 0.0)
    assert r.options["clip_contribution"] == (0.0, 0.0, 0.0, 90.0)
    assert r.options["lr_units"] == "input"
    assert r.options["lr"] == (1.0, 1.0, 1.0, 1e6) and r.options["gain"][::3] == (200.0, 200.0)
    # the clipping rows leave 50 %, 20 % and 90 % of the 256 pixels exactly at the mean colour
    center = pixel_space(convscope.load_model(model)).center.view(3, 1, 1)
    at_mean = [int(((r.images[k] - center).abs().sum(0) == 0).sum()) for k in range(4)]
    assert at_mean[0] == 128 and at_mean[3] == pytest.approx(0.9 * 256, abs=1)
    assert at_mean[1] == pytest.approx(0.2 * 256, abs=1) and at_mean[2] == 0


def test_custom_and_algebra_objectives_run():
    model = TinyCNN()
    obj = convscope.featurevis.channel("conv3:1") - 0.5 * convscope.featurevis.channel("conv3:2")
    both = custom(lambda p: p.output[:, 1] - p.output[:, 2], name="1-minus-2")
    r = convscope.visualize(model, [obj, both], steps=2, size=16)
    assert r.objectives == ["channel:conv3:1 - 0.5 * channel:conv3:2", "1-minus-2"]
    out = model(r.inputs)
    torch.testing.assert_close(r.values[1], (out[1, 1] - out[1, 2]).detach())


def test_unit_objectives_stop_the_forward_pass_early_with_the_same_images():
    """A channel objective reads no class output: each step's pass stops at its layer (the head
    never runs in the loop; the dry run and the final scoring pass run the whole model), and the
    images are those of a run that also computes the output (a zero-weight class term)."""
    from convscope.featurevis import channel, class_score

    model = TinyCNN()
    heads = []
    handle = model.fc.register_forward_hook(lambda m, i, o: heads.append(1))
    kw = {"steps": 4, "size": 16, "seed": 1}
    try:
        short = convscope.visualize(model, "channel:conv2:3", **kw)
        n_short = len(heads)
        full = convscope.visualize(model, channel("conv2:3") + 0 * class_score(0), **kw)
        n_full = len(heads) - n_short
    finally:
        handle.remove()
    assert (n_short, n_full) == (2, 6)
    assert short.output is not None
    torch.testing.assert_close(short.output, full.output)
    torch.testing.assert_close(short.images, full.images)
    torch.testing.assert_close(short.values, full.values)
