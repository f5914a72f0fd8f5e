"""explain() end to end, and its bad-input errors (each one line, model untouched)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import convscope
from convscope.core.guard import fingerprints_equal, model_fingerprint
from tests.models import TinyCNN, tiny_input


def test_real_model_classifies_sample_photos(lite0):
    r = convscope.explain(lite0, ["sample:coffee", "sample:chelsea"], method="gradcam")
    assert r.target_names[0] == "espresso"
    assert r.target_names[1] in {"tabby", "tiger cat", "Egyptian cat"}
    assert r.labels == ["coffee", "chelsea"]
    assert r.maps.shape == (2, 224, 224) and r.raw_maps.shape == (2, 7, 7)
    assert r.pixels.shape == (2, 224, 224, 3) and r.pixels.dtype == torch.uint8
    top = r.top_predictions(5)
    assert top[0][0][1] == "espresso" and top[0][0][2] > 0.5
    assert abs(sum(p for _, _, p in top[0]) - 1) < 0.1


def test_image_kinds_give_the_same_input(lite0, tmp_path):
    from skimage import data

    arr = data.coffee()
    path = tmp_path / "c.png"
    Image.fromarray(arr).save(path)
    a = convscope.explain(lite0, [path, Image.fromarray(arr), arr], method="saliency")
    torch.testing.assert_close(a.maps[0], a.maps[1])
    torch.testing.assert_close(a.maps[0], a.maps[2])
    x, _ = lite0.prepare([Image.fromarray(arr)])
    b = convscope.explain(lite0, x, method="saliency")  # a preprocessed tensor
    torch.testing.assert_close(a.maps[:1], b.maps)
    assert b.pixels is not None  # recovered by inverting the normalization
    assert a.labels == ["c", "image1", "image2"]


def test_preprocessing_matches_the_model_convention(lite0):
    img = Image.fromarray(np.full((300, 400, 3), 255, np.uint8))
    x, pixels = lite0.prepare([img])
    assert x.shape == (1, 3, 224, 224)
    torch.testing.assert_close(x, torch.full_like(x, (255 - 127) / 128))


def test_explanation_save_and_normalize(tiny, tmp_path):
    r = convscope.explain(tiny, tiny_input(2), method="gradcam", target=[1, 2])
    paths = r.save(tmp_path / "out", raw=True)
    assert sorted(p.name for p in paths) == sorted(
        ["image0_gradcam.png", "image0_gradcam.npy", "image1_gradcam.png", "image1_gradcam.npy"]
    )
    raw = np.load(tmp_path / "out" / "image1_gradcam.npy")
    assert raw.dtype == np.float32 and raw.shape == (16, 16)
    np.testing.assert_allclose(raw, r.maps[1].numpy())
    n = r.normalized()
    assert torch.allclose(n.flatten(1).amax(1), torch.ones(2))
    assert "<img" in r._repr_html_()


BAD = [
    (dict(images=[]), convscope.ImageError, "no images given"),
    (dict(images="missing.png"), convscope.ImageError, "no such file"),
    (dict(method="gradcan"), convscope.MethodError, "did you mean: gradcam"),
    (dict(layer="conv9"), convscope.LayerError, "unknown layer 'conv9'"),
    (dict(layer="pool", method="gradcam"), None, None),  # 1x1 maps are allowed when asked for
    (dict(target=9), convscope.TargetError, "out of range"),
    (dict(target="zebra"), convscope.TargetError, "no class names"),
    (dict(method="saliency", foo=1), convscope.MethodError, "does not take option"),
    (dict(batch_size=0), convscope.ConvscopeError, "batch_size"),
    (dict(images=torch.zeros(2, 3, 16, 16, dtype=torch.long)), convscope.ImageError, "float"),
]


@pytest.mark.parametrize("kwargs,err,msg", BAD)
def test_bad_input_is_one_clear_error(kwargs, err, msg):
    model = TinyCNN()
    before = model_fingerprint(model)
    kwargs = dict(kwargs)
    images = kwargs.pop("images", tiny_input(2))
    if err is None:
        convscope.explain(model, images, **kwargs)
    else:
        with pytest.raises(err, match=msg) as info:
            convscope.explain(model, images, **kwargs)
        assert "\n" not in str(info.value)
    assert fingerprints_equal(before, model_fingerprint(model))


def test_unknown_and_ambiguous_class_names_on_imagenet(lite0):
    with pytest.raises(convscope.TargetError, match="ambiguous.*134: crane.*517: crane"):
        convscope.explain(lite0, "sample:coffee", target="crane")
    with pytest.raises(convscope.TargetError, match="unknown class"):
        convscope.explain(lite0, "sample:coffee", target="qwertyuiop")
    with pytest.raises(convscope.TargetError, match=r"out of range.*1000 classes \(0\.\.999\)"):
        convscope.explain(lite0, "sample:coffee", target=1000)
