"""Each piece on known tensors: objectives and their algebra, regularizers, parameterizations,
transforms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from convscope.errors import ConvscopeError, LayerError
from convscope.featurevis import regularizers as reg
from convscope.featurevis.objectives import (
    Env,
    Probe,
    channel,
    class_score,
    direction,
    diversity,
    l2,
    neuron,
    parse_objective,
    total_variation,
)
from convscope.featurevis.param import FourierParam, PixelParam, color_matrix
from convscope.featurevis.transforms import STANDARD, Transforms
from tests.models import TinyCNN


def _probe(acts=None, output=None, image=None):
    image = torch.zeros(2, 3, 4, 4) if image is None else image
    return Probe(image, torch.full((3,), 0.5), output, acts or {})


ENV = Env(TinyCNN(), ["a", "b", "c", "d", "e"], {"conv3": (1, 16, 8, 8), "fc": (1, 5)}, (1, 5))


# -- objectives ---------------------------------------------------------------------------------
def test_parse_kinds():
    assert parse_objective("class:flamingo").name == "class:flamingo"
    assert parse_objective("class:130").cls == 130
    assert parse_objective("prob:3").score == "prob"
    assert parse_objective("channel:_blocks.10:5").unit.channel == 5
    n = parse_objective("neuron:_swish@1:5:3:4")
    assert n.unit.layer == "_swish@1" and n.unit.position == (3, 4)
    d = parse_objective(("direction:conv3", [1.0, 0.0]))
    assert d.layers() == ["conv3"]


@pytest.mark.parametrize(
    "bad, match",
    [
        ("flamingo", "bad objective"),
        ("channel:conv3", "channel objective names LAYER:K"),
        ("neuron:conv3", "neuron objective names"),
        ("channel:conv3:x", "bad unit"),
        ("direction:conv3", "needs a vector"),
        ("class:-3", "start at 0"),
        (3, "not int"),
    ],
)
def test_parse_errors(bad, match):
    with pytest.raises(ConvscopeError, match=match):
        parse_objective(bad)


def test_algebra_values_by_hand():
    acts = {"conv3": torch.arange(2 * 16 * 8 * 8, dtype=torch.float32).reshape(2, 16, 8, 8)}
    out = torch.tensor([[1.0, 2, 3, 4, 5], [5.0, 4, 3, 2, 1]])
    p = _probe(acts, out)
    a, b = class_score(3), channel("conv3:2")
    va = out[:, 3]
    vb = acts["conv3"][:, 2].mean(dim=(1, 2))
    obj = 2 * a - b / 4 + 1.5
    torch.testing.assert_close(obj.bind(ENV)(p), 2 * va - vb / 4 + 1.5)
    assert obj.name == "2 * class:3 - 0.25 * channel:conv3:2 + 1.5"
    torch.testing.assert_close((-a).bind(ENV)(p), -va)
    torch.testing.assert_close((a - "class:1").bind(ENV)(p), va - out[:, 1])
    torch.testing.assert_close((1 - a).bind(ENV)(p), 1 - va)
    nested = 3 * (a + b)
    torch.testing.assert_close(nested.bind(ENV)(p), 3 * va + 3 * vb)
    with pytest.raises(TypeError):
        _ = a * b
    with pytest.raises(ConvscopeError, match="divided by 0"):
        _ = a / 0


def test_class_scores_and_neuron_centre():
    out = torch.tensor([[1.0, 2, 3, 4, 5]])
    p = _probe(output=out, image=torch.zeros(1, 3, 4, 4))
    torch.testing.assert_close(class_score(4, "prob").bind(ENV)(p), out.softmax(1)[:, 4])
    torch.testing.assert_close(class_score("b", "logprob").bind(ENV)(p), out.log_softmax(1)[:, 1])
    acts = {"conv3": torch.randn(1, 16, 8, 8)}
    p = _probe(acts, image=torch.zeros(1, 3, 4, 4))
    torch.testing.assert_close(neuron("conv3:3").bind(ENV)(p), acts["conv3"][:, 3, 4, 4])
    torch.testing.assert_close(neuron("conv3:3:1:2").bind(ENV)(p), acts["conv3"][:, 3, 1, 2])


def test_direction_of_a_basis_vector_is_the_channel():
    acts = {"conv3": torch.randn(2, 16, 8, 8), "fc": torch.randn(2, 5)}
    p = _probe(acts)
    e = torch.zeros(16)
    e[7] = 3.0  # the length does not matter
    torch.testing.assert_close(direction("conv3", e).bind(ENV)(p), channel("conv3:7").bind(ENV)(p))
    v = torch.tensor([1.0, 2.0, 0.0, 0.0, 2.0])
    torch.testing.assert_close(direction("fc", v).bind(ENV)(p), acts["fc"] @ (v / 3))


def test_diversity_by_hand():
    a = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]], [[[1.0, 1.0]], [[1.0, 1.0]]]])  # (2, 2, 1, 2)
    env = Env(TinyCNN(), None, {"conv3": (1, 2, 1, 2)}, (1, 5))
    p = _probe({"conv3": a})
    # Gram matrices: I (unit norm: I / sqrt 2) and all-twos (unit: ones / 2); <.,.> = 2 / (2 sqrt 2)
    sim = 1 / math.sqrt(2)
    torch.testing.assert_close(diversity("conv3").bind(env)(p), torch.tensor([-sim, -sim]))


def test_binding_errors():
    with pytest.raises(LayerError, match="channel 16 is out of range"):
        channel("conv3:16").bind(ENV)
    with pytest.raises(LayerError, match="outside the 8x8 map"):
        neuron("conv3:1:8:0").bind(ENV)
    with pytest.raises(LayerError, match="needs a 4-D"):
        neuron("fc:1").bind(ENV)
    with pytest.raises(LayerError, match="needs a 4-D"):
        diversity("fc").bind(ENV)
    with pytest.raises(LayerError, match="unknown layer 'conv9'.*conv"):
        channel("conv9:1").bind(ENV)
    with pytest.raises(ConvscopeError, match="out of range"):
        class_score(5).bind(ENV)
    with pytest.raises(ConvscopeError, match="unknown class"):
        class_score("zebra").bind(ENV)
    with pytest.raises(LayerError, match="vector has 3 values"):
        direction("conv3", [1.0, 2.0, 3.0]).bind(ENV)


def test_penalties_by_hand():
    x = torch.tensor([[[[0.5, 1.0], [0.0, 0.5]]] * 3])  # (1, 3, 2, 2)
    p = _probe(image=x)
    # deviations from 0.5: 0, .5, -.5, 0 per channel -> 0.5 per channel, 1.5 in all
    torch.testing.assert_close(l2().bind(ENV)(p), torch.tensor([-1.5]))
    # |1-.5| + |.5-0| (rows) + |.5-0| + |.5-1| (columns) = 2 per channel
    torch.testing.assert_close(total_variation().bind(ENV)(p), torch.tensor([-6.0]))


# -- regularizers -------------------------------------------------------------------------------
@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.3])
def test_gaussian_blur_equals_scipy(sigma):
    x = torch.rand(2, 3, 9, 13, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = reg.gaussian_blur(x, sigma)
    ref = np.stack([[gaussian_filter(c, sigma) for c in img] for img in x.numpy()])
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-12)
    assert reg.gaussian_blur(x, 0) is x


def test_percentile_equals_numpy():
    v = torch.rand(3, 17, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for pct in (0.0, 12.5, 50.0, 90.0, 100.0):
        got = reg._percentile(v, torch.full((3,), pct))
        np.testing.assert_allclose(got.numpy(), np.percentile(v.numpy(), pct, axis=1))


def test_clip_small_norm_on_known_pixels():
    # pixel norms 1, 2, 3, 4 (a 2x2 image); the 50th percentile is 2.5: the first two go to 0
    x = torch.zeros(1, 3, 2, 2)
    x[0, 0] = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    x[0, 1, 1, 1] = 4.0
    got = reg.clip_small_norm(x, 50)
    want = x.clone()
    want[0, 0, 0] = 0
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(reg.clip_small_norm(x, 0), x)
    # per image: the second image keeps everything
    both = reg.clip_small_norm(torch.cat([x, x]), torch.tensor([50.0, 0.0]))
    torch.testing.assert_close(both, torch.cat([want, x]))


def test_clip_small_contribution_on_known_pixels():
    x = torch.ones(1, 3, 1, 4)
    grad = torch.zeros(1, 3, 1, 4)
    grad[0, 0, 0] = torch.tensor([0.1, -5.0, 2.0, 0.0])  # contributions |x . g| = .1, 5, 2, 0
    got = reg.clip_small_contribution(x, grad, 50)  # percentile 50 of (0, .1, 2, 5) = 1.05
    torch.testing.assert_close(got[0, :, 0], torch.tensor([[0.0, 1, 1, 0]] * 3))


def test_decay():
    x = torch.ones(2, 3, 2, 2)
    torch.testing.assert_close(reg.decay(x, 0.25), 0.75 * x)
    out = reg.decay(x, torch.tensor([0.0, 0.5]))
    assert float(out[0].max()) == 1.0 and float(out[1].max()) == 0.5


# -- parameterizations --------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(8, 8), (7, 10), (9, 5)])
@pytest.mark.parametrize("decorrelate", [True, False])
def test_fourier_param_inverts(size, decorrelate):
    img = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(2)) * 0.9 + 0.05
    param = FourierParam.from_image(img, decorrelate=decorrelate)
    torch.testing.assert_close(param.image().detach(), img, atol=2e-5, rtol=0)


def test_fourier_image_matches_numpy_reference():
    h, w = 6, 7
    gen = torch.Generator().manual_seed(0)
    spec = FourierParam.init((3, h, w), [gen], std=0.5)
    got = FourierParam(spec, (h, w), decorrelate=True).image().detach().double().numpy()[0]
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    scale = 1 / np.maximum(np.sqrt(fx**2 + fy**2), 1 / max(h, w))
    s = spec[0].double().numpy()
    t = np.fft.irfft2((s[..., 0] + 1j * s[..., 1]) * scale, s=(h, w), norm="ortho") / 4
    m = np.array([[0.26, 0.09, 0.02], [0.27, 0.0, -0.05], [0.27, -0.09, 0.03]])
    m = m / np.linalg.norm(m, axis=0).max()
    ref = 1 / (1 + np.exp(-np.einsum("ij,jhw->ihw", m, t)))
    np.testing.assert_allclose(got, ref, atol=1e-6)


def test_color_matrix_columns():
    m = color_matrix()
    assert float(m.norm(dim=0).max()) == pytest.approx(1.0)
    # the first column (brightness) moves R, G, B together
    assert bool((m[:, 0] > 0).all())


def test_pixel_param_zero_start_and_projection():
    center = torch.tensor([0.2, 0.5, 0.9])
    deltas = PixelParam.init((3, 2, 2), [None, None], "zeros")
    p = PixelParam(deltas, center)
    torch.testing.assert_close(p.image()[:, :, 0, 0], center.expand(2, 3))
    with torch.no_grad():
        p.delta.add_(1.0)
    p.project_()
    assert float(p.image().detach().max()) == 1.0
    with torch.no_grad():
        p.delta.sub_(5.0)
    p.project_()
    assert float(p.image().detach().min()) == 0.0


# -- transforms ---------------------------------------------------------------------------------
def _image(h=8, w=8):
    return torch.arange(3 * h * w, dtype=torch.float32).reshape(1, 3, h, w) / (3 * h * w)


def test_shift_moves_content_and_fills_grey():
    img = _image()
    t = Transforms(jitter=2)
    draws = torch.tensor([[0.0, 0.0, 1.0, 0.0, 2.0, -1.0]])  # shift2 = (+2, -1) pixels
    out = t.apply(img, draws)
    torch.testing.assert_close(out[:, :, 0:7, 2:8], img[:, :, 1:8, 0:6], atol=1e-6, rtol=0)
    assert torch.allclose(out[:, :, :, 0:2], torch.tensor(0.5))  # uncovered: grey
    assert torch.allclose(out[:, :, 7, :], torch.tensor(0.5))


def test_rotation_by_90_degrees_is_rot90():
    img = _image()
    t = Transforms(angles=(90.0,))
    out = t.apply(img, torch.tensor([[0.0, 0.0, 1.0, 90.0, 0.0, 0.0]]))
    ref = torch.rot90(img, 1, dims=(2, 3))
    if not torch.allclose(out, ref, atol=1e-5):
        ref = torch.rot90(img, -1, dims=(2, 3))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_pad_shrinks_the_view_and_scale_undoes_it():
    img = _image(12, 12)
    t = Transforms(pad=6)  # canvas 24 wide shown in 12 pixels: the image at half size
    out = t.apply(img, torch.tensor([[0.0, 0.0, 2.0, 0.0, 0.0, 0.0]]))  # zoom 2 undoes it
    torch.testing.assert_close(out, img, atol=1e-5, rtol=0)
    half = t.apply(img, torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0, 0.0]]))
    assert torch.allclose(half[:, :, :, :2], torch.tensor(0.5))  # the grey pad at the border


def test_draws_cover_lucids_ranges():
    table = STANDARD.draw(2000, torch.Generator().manual_seed(0))
    assert set(table[:, 0].int().tolist()) == set(range(-4, 4))
    assert set(table[:, 4].int().tolist()) == set(range(-2, 2))
    allowed = torch.tensor([0.9 + 0.02 * i for i in range(11)])
    assert bool((table[:, 2:3] - allowed[None]).abs().min(dim=1).values.max() < 1e-6)
    assert table[:, 3].min() >= -10 and table[:, 3].max() <= 10
    assert (table[:, 3] == 0).float().mean() > 0.15  # 0 is favoured (6 of 26)


# -- update rules -------------------------------------------------------------------------------
def test_adam_equals_torch_adam():
    from convscope.featurevis.optim import Adam

    gen = torch.Generator().manual_seed(0)
    p0 = torch.randn(4, 5, generator=gen)
    grads = [torch.randn(4, 5, generator=gen) for _ in range(6)]
    ours = p0.clone()
    adam = Adam([ours], lr=0.05)
    ref = p0.clone().requires_grad_(True)
    opt = torch.optim.Adam([ref], lr=0.05)
    for g in grads:
        adam.ascend((g,))
        ref.grad = -g  # torch's Adam descends
        opt.step()
    torch.testing.assert_close(ours, ref.detach())


def test_ascent_rates_by_hand():
    from convscope.featurevis.optim import ascent_rate

    g = torch.tensor([[3.0, 4.0], [0.0, 0.0], [3.0, 4.0], [3.0, 4.0]])  # norms 5, 0, 5, 5
    lr = torch.tensor([0.5, 0.5, 2.0, 1.0])
    rule = torch.tensor([1, 1, 0, 2])
    gain = torch.tensor([1.0, 1.0, 1.0, 5.0])
    got = ascent_rate(g, lr, rule, gain)
    torch.testing.assert_close(got, torch.tensor([0.1, 0.0, 2.0, 0.2]))
