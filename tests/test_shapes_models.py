"""The shipped shapes-world models: they load by name with their class names, do what their logs
say on held-out images, and shapes-cnn's Grad-CAM points at the shape it names."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import convscope
from convscope.data.shapes import GRAY28, SHAPES, generate
from convscope.metrics.localization import pointing_game
from convscope.models.shapes import GrayPreprocess, shipped_log
from convscope.train.trainer import HELD_OUT


@pytest.fixture(scope="module")
def cnn():
    return convscope.load_model("shapes-cnn")


def test_bundles_are_registered_with_class_names(cnn):
    listed = convscope.list_models()
    assert {"shapes-cnn", "softmax-regression", "mlp"} <= listed.keys()
    assert cnn.class_names == list(SHAPES) and cnn.default_layer == "relu3"
    assert not cnn.model.training
    assert cnn.model.conv1.weight.shape == (16, 3, 11, 11)


def test_shapes_cnn_is_accurate_on_held_out_images(cnn):
    batch = generate(200, HELD_OUT + 7, count=1)  # a world none of the runs saw
    with torch.no_grad():
        pred = cnn.model(batch.images).argmax(1)
    assert float((pred == batch.labels["shape"]).float().mean()) >= 0.95
    log = shipped_log("shapes-cnn")
    assert log["eval"][-1]["accuracy"] >= 0.95
    assert log["filters_trained"]["oriented_fraction"] > log["filters_init"]["oriented_fraction"]


@pytest.mark.parametrize("name", ["softmax-regression", "mlp"])
def test_lecture_004_models_are_accurate(name):
    bundle = convscope.load_model(name)
    batch = generate(300, HELD_OUT + 7, **GRAY28)
    with torch.no_grad():
        pred = bundle.model(batch.images).argmax(1)
    assert float((pred == batch.labels["shape"]).float().mean()) >= 0.95


def test_gradcam_points_at_the_single_shape(cnn):
    """At the default layer relu3: 16 x 16 cells of 4 pixels (the pointing game's tolerance),
    each unit seeing 27 x 27 pixels (the 8 x 8 version with 39-pixel fields pointed 0.75)."""
    rf = convscope.receptive_field(cnn, "relu3", (64, 64))
    assert rf.map_size == (16, 16) and rf.stride == (4, 4) and rf.size == (27, 27)
    batch = generate(100, 2_000_003, count=1)
    target = batch.labels["shape"].tolist()
    r = convscope.explain(cnn, batch.images, "gradcam", target=target)
    assert r.layer == "relu3"
    assert pointing_game(r.maps, batch.masks > 0, tolerance=4).accuracy >= 0.95


def test_preprocessing_a_photo_of_a_sample_gives_the_sample(cnn):
    batch = generate(2, 0)
    pixels = (batch.images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    photos = [Image.fromarray(p) for p in pixels]
    x, _ = cnn.prepare(photos)
    assert torch.allclose(x, batch.images, atol=0.5 / 255 + 1e-6)
    gray = GrayPreprocess(28)(Image.fromarray(np.full((28, 28, 3), 51, np.uint8)))
    assert gray.shape == (1, 28, 28) and torch.allclose(gray, torch.full_like(gray, 0.2))
