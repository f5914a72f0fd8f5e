"""Model bundles and loaders."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from PIL import Image

import convscope
from convscope.core.bundle import Preprocess
from tests.models import TinyCNN, tiny_input


def test_registry_lists_the_bundled_model():
    import convscope.models  # the subpackage must not shadow the function

    assert "efficientnet_lite0" in convscope.list_models()


def test_bundled_model_is_the_real_imagenet_network(lite0):
    assert len(lite0.class_names) == 1000
    assert lite0.class_name(967) == "espresso"
    assert sum(p.numel() for p in lite0.model.parameters()) == 4_652_008
    assert not lite0.model.training
    assert isinstance(lite0.model._swish, torch.nn.ReLU6)


def test_torchscript_file_loads_and_explains_like_the_original(tmp_path):
    m = TinyCNN().eval()
    x = tiny_input(2)
    path = tmp_path / "tiny.pt"
    torch.jit.trace(m, x).save(str(path))
    bundle = convscope.load_model(str(path))
    assert bundle.name == "tiny.pt"
    a = convscope.explain(bundle, x, method="saliency", target=[1, 2])
    b = convscope.explain(m, x, method="saliency", target=[1, 2])
    torch.testing.assert_close(a.maps, b.maps)


def test_a_file_that_is_not_torchscript(tmp_path):
    path = tmp_path / "weights.pt"
    path.write_bytes(b"not a model")
    with pytest.raises(convscope.ModelError, match="is not a TorchScript model"):
        convscope.load_model(str(path))


@pytest.mark.skipif(
    importlib.util.find_spec("torchvision") is not None, reason="torchvision present"
)
def test_torchvision_missing_is_one_clear_error():
    with pytest.raises(convscope.ModelError, match=r"needs torchvision.*convscope\[torchvision\]"):
        convscope.load_model("torchvision:resnet18")


@pytest.mark.skipif(importlib.util.find_spec("timm") is not None, reason="timm present")
def test_timm_missing_is_one_clear_error():
    with pytest.raises(convscope.ModelError, match=r"needs timm"):
        convscope.load_model("timm:resnet18")


def test_unknown_model_suggests():
    with pytest.raises(convscope.ModelError, match="did you mean: efficientnet_lite0"):
        convscope.load_model("efficientnet_lite")


def test_user_module_with_its_own_names_preprocess_and_layer():
    m = TinyCNN()
    names = ["ant", "bee", "cat", "dog", "eel"]
    bundle = convscope.load_model(
        m,
        class_names=names,
        preprocess=Preprocess(resize=20, crop=16),
        default_layer="conv3",
    )
    img = Image.new("RGB", (40, 30), (200, 10, 10))
    r = convscope.explain(bundle, [img, img], target=["dog", "bee"])
    assert r.layer == "conv3" and r.targets == [3, 1] and r.target_names == ["dog", "bee"]
    assert r.pixels.shape == (2, 16, 16, 3)
    assert r.pixels[0, 0, 0].tolist() == [200, 10, 10]


def test_callable_preprocess():
    m = TinyCNN()

    def pre(img):
        return torch.zeros(3, 12, 12)

    r = convscope.explain(convscope.load_model(m, preprocess=pre), Image.new("RGB", (5, 5)))
    assert r.maps.shape == (1, 12, 12) and r.pixels.shape == (1, 12, 12, 3)
