"""Bad input: one clear error, before any optimization runs."""

from __future__ import annotations

import pytest

import convscope
from convscope.errors import ConvscopeError, LayerError, ModelError, TargetError
from convscope.featurevis import Transforms
from tests.featurevis.helpers import Counting
from tests.models import TinyCNN


def _bundle():
    return convscope.ModelBundle(Counting(TinyCNN()), class_names=list("abcde"))


CASES = [
    # (objective, kwargs, error, message, forward passes allowed: 0 before the dry run, 1 after)
    ("class:zebra", {}, TargetError, "unknown class 'zebra'", 1),
    ("class:7", {}, TargetError, "out of range: the model has 5 classes", 1),
    ("channel:inner.conv9:1", {}, LayerError, "unknown layer 'inner.conv9'.*inner.conv", 1),
    ("channel:inner.conv3:16", {}, LayerError, "channel 16 is out of range", 1),
    ("neuron:inner.conv3:1:8:8", {}, LayerError, "outside the 8x8 map", 1),
    ("neuron:inner.fc:1", {}, LayerError, "needs a 4-D", 1),
    ("channel:inner.act:1", {}, LayerError, "runs 2 times", 1),
    ("class:1", {"steps": 0}, ConvscopeError, "steps must be an integer >= 1", 0),
    ("class:1", {"steps": -3}, ConvscopeError, "steps must be an integer >= 1", 0),
    ("class:1", {"size": 0}, ConvscopeError, "size must be", 0),
    ("class:1", {"batch": 0}, ConvscopeError, "batch must be", 0),
    ("class:1", {"preset": "lucidd"}, ConvscopeError, "unknown preset.*lucid", 0),
    ("class:1", {"preset": "fooling", "l2": 0.1}, ConvscopeError, "contradicts", 0),
    ("class:1", {"preset": "lucid", "param": "pixels"}, ConvscopeError, "contradicts", 0),
    ("class:1", {"preset": "simonyan", "transforms": "standard"}, ConvscopeError, "contradicts", 0),
    ("class:1", {"preset": "yosinski", "batch": 2}, ConvscopeError, "contradicts", 0),
    ("class:1", {"blur_sigma": 1.0, "blur_every": 4}, ConvscopeError, "need param='pixels'", 0),
    ("class:1", {"step": "normalized"}, ConvscopeError, "needs optimizer='ascent'", 0),
    ("class:1", {"colour": True}, ConvscopeError, "unknown option", 0),
    ("class:1", {"lr": -1}, ConvscopeError, "lr must be >= 0", 0),
    ("class:1", {"param": "pixels", "clip_norm": 120}, ConvscopeError, "percentiles", 0),
    ("class:1", {"lr": [0.1, 0.2], "batch": 3}, ConvscopeError, "per-copy options have 2", 0),
    ("class:1", {"transforms": "wobbly"}, ConvscopeError, "transforms must be", 0),
    ("class:1", {"lr_units": "input"}, ConvscopeError, "lr_units='input' is for gradient", 0),
    ("class:1", {"param": "pixels", "lr_units": "bytes"}, ConvscopeError, "lr_units must be", 0),
    ([], {}, ConvscopeError, "no objective", 0),
]


@pytest.mark.parametrize("objective, kwargs, error, match, passes", CASES)
def test_errors_come_before_any_optimization(objective, kwargs, error, match, passes):
    b = _bundle()
    kwargs.setdefault("size", 16)
    kwargs.setdefault("steps", 3)
    with pytest.raises(error, match=match):
        convscope.visualize(b, objective, **kwargs)
    assert b.model.calls <= passes  # at most the dry run (no optimization step)


def test_custom_preprocessing_is_refused():
    b = convscope.ModelBundle(TinyCNN(), preprocess=lambda im: None)
    with pytest.raises(ModelError, match="cannot be differentiated"):
        convscope.visualize(b, "class:1", steps=1, size=16)


def test_transforms_validate():
    with pytest.raises(ValueError, match="jitter"):
        Transforms(jitter=-1)
    with pytest.raises(ValueError, match="scales"):
        Transforms(scales=(0.0,))
