"""Spearman (ties) against scipy, SSIM against scikit-image, and the cascading model-parameter
randomization: order, stage 0, reproducibility, the model untouched, and Grad-CAM failing to
survive randomization on TinyCNN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from skimage.metrics import structural_similarity

from convscope.core.guard import fingerprints_equal, model_fingerprint
from convscope.core.layer_listing import parametric_layers
from convscope.errors import ConvscopeError, LayerError
from convscope.metrics import (
    model_randomization,
    rankdata,
    spearman,
    ssim,
)
from convscope.metrics.sanity import checkpoint_layers
from tests.models import TinyCNN, tiny_input


def test_rankdata_averages_ties_like_scipy():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 5, (4, 30), generator=g).float()
    got = rankdata(x)
    for i in range(4):
        assert got[i].tolist() == stats.rankdata(x[i].numpy(), method="average").tolist()


def test_spearman_matches_scipy_with_ties():
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 4, (5, 6, 6), generator=g).float()  # many ties
    b = (a + torch.randint(-2, 3, (5, 6, 6), generator=g)).clamp_min(0)  # ReLU'd: many zeros
    got = spearman(a, b)
    assert got.shape == (5,)
    for i in range(5):
        ref = stats.spearmanr(a[i].flatten().numpy(), b[i].flatten().numpy()).statistic
        assert float(got[i]) == pytest.approx(ref, abs=1e-12)
    # 1-D inputs give a scalar; a perfect monotone relation is 1, reversed -1
    v = torch.tensor([0.0, 0.0, 1.0, 2.0])
    assert float(spearman(v, v**3)) == pytest.approx(1.0)
    assert float(spearman(v, -v)) == pytest.approx(-1.0)
    assert torch.isnan(spearman(torch.ones(4), v))  # a constant has no ranking (scipy: nan)


def test_ssim_matches_scikit_image():
    g = torch.Generator().manual_seed(2)
    a = torch.rand(3, 16, 20, generator=g)
    b = (a + 0.3 * torch.rand(3, 16, 20, generator=g)).clamp(0, 1)
    got = ssim(a, b)
    for i in range(3):
        ref = structural_similarity(a[i].double().numpy(), b[i].double().numpy(), data_range=1.0)
        assert float(got[i]) == pytest.approx(ref, abs=1e-10)
    assert float(ssim(a, a)[0]) == pytest.approx(1.0)


def test_randomization_of_gradcam_on_tinycnn():
    model = TinyCNN()
    model.train()
    before = model_fingerprint(model)
    rng = torch.get_rng_state()
    x = tiny_input(4)
    r = model_randomization(model, x, "gradcam", target=[0, 1, 2, 3], seed=3)
    assert r.stages == ["original", "fc", "conv3", "conv2", "conv1"]
    assert r.targets == [0, 1, 2, 3]
    assert r.correlations.shape == r.correlations_abs.shape == r.ssim.shape == (5, 4)
    assert r.maps.shape == (5, 4, 16, 16)
    assert torch.allclose(r.correlations[0], torch.ones(4, dtype=torch.float64))
    assert torch.allclose(r.ssim[0], torch.ones(4, dtype=torch.float64))
    # everything randomized: the maps no longer follow the original ones
    last = r.correlations[-1]
    assert torch.isfinite(last).any() and float(last.nanmean()) < 0.9
    assert bool((last[torch.isfinite(last)] < 0.9).all())
    # the user's model, its training flag and the global RNG are as they were
    assert fingerprints_equal(before, model_fingerprint(model)) and model.training
    assert torch.equal(rng, torch.get_rng_state())
    rows = r.rows()
    assert [row["layer"] for row in rows] == r.stages and rows[0]["spearman"] == pytest.approx(1)


def test_randomization_stages_int_and_names_are_reproducible():
    model = TinyCNN()
    x = tiny_input(2)
    full = model_randomization(model, x, "saliency", stages="all", with_ssim=False)
    top2 = model_randomization(model, x, "saliency", stages=2, with_ssim=False)
    assert top2.stages == ["original", "fc", "conv3"] and top2.ssim is None
    assert torch.allclose(top2.correlations, full.correlations[:3])
    assert torch.allclose(top2.maps, full.maps[:3])
    named = model_randomization(model, x, "saliency", stages=["conv2", "fc"], with_ssim=False)
    assert named.stages == ["original", "fc", "conv2"]  # put in top-down order
    # checkpoints of the one cascade: at conv2, conv3 above it is randomized too
    assert torch.allclose(named.maps, full.maps[[0, 1, 3]])
    assert torch.allclose(named.correlations, full.correlations[[0, 1, 3]])
    # saliency (|gradient|) of the signed map and of its absolute value are the same here
    assert torch.allclose(full.correlations, full.correlations_abs)


def test_randomization_with_a_layer_given_as_a_module_of_the_users_model():
    model = TinyCNN()
    r = model_randomization(model, tiny_input(2), "gradcam", layer=model.conv2, stages=1)
    assert r.stages == ["original", "fc"]
    assert torch.allclose(r.correlations[0], torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize(
    "stages,error,message",
    [
        (["nope"], LayerError, "unknown layer"),
        (["act"], ConvscopeError, "no parameters of its own"),
        (0, ConvscopeError, "at least 1"),
    ],
)
def test_bad_stages(stages, error, message):
    with pytest.raises(error, match=message):
        model_randomization(TinyCNN(), tiny_input(1), "gradcam", stages=stages)


def test_bad_shapes():
    with pytest.raises(ConvscopeError, match="cannot correlate"):
        spearman(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ConvscopeError, match="at least 7 x 7"):
        ssim(torch.zeros(1, 5, 5), torch.zeros(1, 5, 5))
    assert np.isfinite(float(spearman(torch.arange(3.0), torch.arange(3.0))))


def test_checkpoint_layers_spread_k_weighted_layers_from_the_top_down():
    model = TinyCNN()
    order = parametric_layers(model, tiny_input(1))  # fc, conv3, conv2, conv1
    assert checkpoint_layers(model, order, 1) == ["fc"]
    assert checkpoint_layers(model, order, 2) == ["fc", "conv1"]
    # positions round(j * 3 / 2) for j = 0, 1, 2: 0, 2, 3
    assert checkpoint_layers(model, order, 3) == ["fc", "conv2", "conv1"]
    assert checkpoint_layers(model, order, 9) == order
    with pytest.raises(ConvscopeError, match="at least 1"):
        checkpoint_layers(model, order, 0)
