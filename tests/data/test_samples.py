"""Tests for convscope.data.samples: the listed samples load offline as RGB with the right sizes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from convscope.data import sample_catalog as samples_module
from convscope.data.images import load_image
from convscope.data.samples import load_sample, samples
from convscope.errors import ImageError

REQUIRED = [
    "astronaut",
    "camera",
    "cat",
    "chelsea",
    "coffee",
    "coins",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "page",
    "rocket",
    "retina",
    "horse",
    "text",
    "china",
    "flower",
]


def test_samples_lists_required_names_with_one_line_descriptions() -> None:
    listed = samples()
    assert set(REQUIRED) <= set(listed)
    assert list(listed) == list(samples())  # stable order
    for name, description in listed.items():
        assert description.strip() and "\n" not in description, name


def test_samples_returns_a_fresh_dict() -> None:
    listed = samples()
    listed.clear()
    assert "coffee" in samples()


@pytest.mark.parametrize(("name", "shape"), [("coffee", (400, 600, 3)), ("chelsea", (300, 451, 3))])
def test_colour_samples_load_as_rgb(name: str, shape: tuple[int, int, int]) -> None:
    im = load_sample(name)
    assert im.mode == "RGB"
    assert np.asarray(im).shape == shape
    skimage_data = pytest.importorskip("skimage.data")
    assert np.array_equal(np.asarray(im), getattr(skimage_data, name)())


def test_sample_prefix_and_case() -> None:
    a = np.asarray(load_image("sample:coffee"))
    b = np.asarray(load_sample(" Coffee "))
    assert a.shape == (400, 600, 3) and np.array_equal(a, b)


def test_cat_is_chelsea() -> None:
    assert np.array_equal(np.asarray(load_sample("cat")), np.asarray(load_sample("chelsea")))


def test_greyscale_and_binary_samples_are_replicated() -> None:
    camera = np.asarray(load_sample("camera"))
    assert camera.shape == (512, 512, 3)
    assert (camera[..., 0] == camera[..., 1]).all() and (camera[..., 1] == camera[..., 2]).all()
    horse = np.asarray(load_sample("horse"))
    assert horse.shape == (328, 400, 3)
    assert set(np.unique(horse).tolist()) == {0, 255}


def test_every_listed_skimage_sample_loads() -> None:
    for name in samples():
        if name in ("china", "flower"):
            continue
        im = load_sample(name)
        assert im.mode == "RGB" and im.width > 0 and im.height > 0, name


def test_unknown_sample_suggests_a_close_match() -> None:
    with pytest.raises(ImageError) as info:
        load_sample("cofee")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("unknown sample 'cofee'")
    assert "did you mean: coffee" in message
    assert "convscope samples" in message


def test_unknown_sample_without_close_match() -> None:
    with pytest.raises(ImageError, match="unknown sample 'zzzzqqq'; run `convscope samples`"):
        load_sample("zzzzqqq")


@pytest.mark.parametrize("name", ["china", "flower"])
def test_sklearn_samples(name: str) -> None:
    pytest.importorskip("sklearn")
    im = load_sample(name)
    assert im.mode == "RGB"
    assert np.asarray(im).shape == (427, 640, 3)


def test_sklearn_missing_gives_install_hint(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImageError) as info:
        load_sample("china")
    message = str(info.value)
    assert "pip install scikit-learn" in message and "convscope[samples]" in message
    assert "'china'" in message and "\n" not in message


def test_skimage_loader_failure_becomes_image_error(monkeypatch) -> None:
    skimage_data = pytest.importorskip("skimage.data")

    def needs_pooch():
        raise ModuleNotFoundError("The requested file requires pooch.\nInstall it.")

    monkeypatch.setattr(skimage_data, "horse", needs_pooch)  # horse is not read as a file
    with pytest.raises(ImageError) as info:
        load_sample("horse")
    message = str(info.value)
    assert "'horse'" in message and "pooch" in message and "\n" not in message


@pytest.mark.parametrize("name", sorted(samples_module._FILES))
def test_samples_read_as_files_equal_the_providers_loaders(name: str) -> None:
    """The samples read straight from the package's file (no scikit-image or scikit-learn import)
    have the pixels that the provider's own loader gives."""
    provider, source, _ = samples_module._SAMPLES[name]
    assert samples_module._package_file(provider, samples_module._FILES[name]) is not None
    if provider == "sklearn":
        from sklearn.datasets import load_sample_image

        array = load_sample_image(source)
    else:
        import skimage.data

        array = getattr(skimage.data, source)()
    expected = np.asarray(load_image(array))
    assert np.array_equal(np.asarray(load_sample(name)), expected)


def test_loading_a_sample_imports_neither_provider() -> None:
    code = (
        "import sys; from convscope.data.samples import load_sample; load_sample('coffee'); "
        "load_sample('china'); print(sorted(m for m in ('skimage', 'sklearn', 'scipy', "
        "'imageio') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_module_level_image_cache() -> None:
    load_sample("coffee")
    cached = [
        name
        for name, value in vars(samples_module).items()
        if isinstance(value, (np.ndarray, Image.Image))
    ]
    assert cached == []
