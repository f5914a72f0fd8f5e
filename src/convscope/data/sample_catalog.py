"""The catalog of bundled sample photos and how to read each one as a numpy array.

The photos come from scikit-image's ``skimage.data`` (only those shipped with scikit-image, so they
load offline without pooch) and scikit-learn's ``load_sample_image`` (``china`` and ``flower``,
which need the optional ``convscope[samples]`` extra). Nothing is cached: each call reads the file.
Decoding into RGB is :func:`convscope.data.images.load_image`'s job (``"sample:NAME"`` there, or
:func:`convscope.data.samples.load_sample`).
"""

from __future__ import annotations

import numpy as np

from convscope.errors import ImageError, did_you_mean

__all__ = ["sample_source", "samples"]

_SKIMAGE = "skimage"
_SKLEARN = "sklearn"

# name -> (provider, loader name or file, one-line description), in the order ``samples()`` lists.
_SAMPLES: dict[str, tuple[str, str, str]] = {
    "astronaut": (_SKIMAGE, "astronaut", "Astronaut Eileen Collins, colour portrait, 512x512"),
    "brick": (_SKIMAGE, "brick", "Brick wall texture, greyscale, 512x512"),
    "camera": (_SKIMAGE, "camera", "Cameraman on a tripod, greyscale, 512x512"),
    "cat": (_SKIMAGE, "cat", "Chelsea the cat (same photo as 'chelsea'), colour, 300x451"),
    "cell": (_SKIMAGE, "cell", "Cell floating in saline, greyscale phase image, 660x550"),
    "chelsea": (_SKIMAGE, "chelsea", "Chelsea the cat, colour, 300x451"),
    "clock": (_SKIMAGE, "clock", "Motion-blurred wall clock, greyscale, 300x400"),
    "coffee": (_SKIMAGE, "coffee", "Cup of coffee on a saucer, colour, 400x600"),
    "coins": (_SKIMAGE, "coins", "Greek coins from Pompeii, greyscale, 303x384"),
    "colorwheel": (_SKIMAGE, "colorwheel", "Colour wheel, colour, 370x371"),
    "grass": (_SKIMAGE, "grass", "Grass texture, greyscale, 512x512"),
    "gravel": (_SKIMAGE, "gravel", "Gravel texture, greyscale, 512x512"),
    "horse": (_SKIMAGE, "horse", "Black-and-white horse silhouette, binary, 328x400"),
    "hubble_deep_field": (
        _SKIMAGE,
        "hubble_deep_field",
        "Hubble eXtreme Deep Field, colour, 872x1000",
    ),
    "immunohistochemistry": (
        _SKIMAGE,
        "immunohistochemistry",
        "Immunohistochemical (IHC) staining of tissue, colour, 512x512",
    ),
    "logo": (_SKIMAGE, "logo", "scikit-image logo (transparency shown on white), 500x500"),
    "microaneurysms": (_SKIMAGE, "microaneurysms", "Retina detail with microaneurysms, 102x102"),
    "moon": (_SKIMAGE, "moon", "Surface of the moon, greyscale, 512x512"),
    "page": (_SKIMAGE, "page", "Scanned page of text, greyscale, 191x384"),
    "retina": (_SKIMAGE, "retina", "Human retina fundus photo, colour, 1411x1411"),
    "rocket": (_SKIMAGE, "rocket", "DSCOVR launching on a SpaceX Falcon 9, colour, 427x640"),
    "text": (_SKIMAGE, "text", "Text used for corner detection, greyscale, 172x448"),
    "china": (_SKLEARN, "china.jpg", "Chinese temple, colour, 427x640 (needs scikit-learn)"),
    "flower": (
        _SKLEARN,
        "flower.jpg",
        "Close-up of a flower, colour, 427x640 (needs scikit-learn)",
    ),
}


# Samples that are one file in the provider's package, read with Pillow like any image file: the
# provider's own loader would import scikit-image's io (imageio, scipy) or scikit-learn first,
# 0.3-0.5 s of a command's start (benchmarks/bench_startup.py). tests/data/test_samples.py checks
# that both give the same pixels.
_FILES: dict[str, str] = {
    **{
        name: f"data/{file}"
        for name, file in {
            "astronaut": "astronaut.png",
            "brick": "brick.png",
            "camera": "camera.png",
            "cat": "chelsea.png",
            "cell": "cell.png",
            "chelsea": "chelsea.png",
            "clock": "clock_motion.png",
            "coffee": "coffee.png",
            "coins": "coins.png",
            "colorwheel": "color.png",
            "grass": "grass.png",
            "gravel": "gravel.png",
            "hubble_deep_field": "hubble_deep_field.jpg",
            "immunohistochemistry": "ihc.png",
            "logo": "logo.png",
            "microaneurysms": "microaneurysms.png",
            "moon": "moon.png",
            "page": "page.png",
            "retina": "retina.jpg",
            "rocket": "rocket.jpg",
            "text": "text.png",
        }.items()
    },
    "china": "datasets/images/china.jpg",
    "flower": "datasets/images/flower.jpg",
}


def _package_file(provider: str, rel: str) -> str | None:
    """The path of ``rel`` inside the installed package ``provider``, found without importing it
    (None when the package or the file is missing: the provider's loader then says why)."""
    import importlib.util
    import os

    try:
        spec = importlib.util.find_spec(provider)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = os.path.join(root, rel)
        if os.path.isfile(path):
            return path
    return None


def samples() -> dict[str, str]:
    """The sample names and their one-line descriptions, in a stable order."""
    return {name: description for name, (_, _, description) in _SAMPLES.items()}


def sample_source(name: str) -> str | np.ndarray:
    """The sample photo ``name`` (see :func:`samples`): the path of its file in the provider's
    package where there is one (read like any image file, without importing the provider), else
    the array the provider's loader returns (uint8 or bool, greyscale or colour);
    :func:`convscope.data.images.load_image` turns either into RGB."""
    key = name.strip().lower()
    if key not in _SAMPLES:
        raise ImageError(
            f"unknown sample {name!r}{did_you_mean(key, _SAMPLES)}; "
            "run `convscope samples` to list them"
        )
    provider, source, _ = _SAMPLES[key]
    path = _package_file(provider, _FILES[key]) if key in _FILES else None
    if path is not None:
        return path
    return _load_sklearn(key, source) if provider == _SKLEARN else _load_skimage(key, source)


def _load_skimage(name: str, loader: str) -> np.ndarray:
    try:
        import skimage.data
    except ImportError as exc:
        raise ImageError(f"sample {name!r} needs scikit-image: pip install scikit-image") from exc
    fn = getattr(skimage.data, loader, None)
    if fn is None:
        raise ImageError(f"sample {name!r} is not in this scikit-image version's skimage.data")
    try:
        return fn()
    except Exception as exc:  # e.g. ModuleNotFoundError for pooch, OSError for a missing file
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ImageError(f"cannot load sample {name!r} from scikit-image: {reason}") from exc


def _load_sklearn(name: str, filename: str) -> np.ndarray:
    try:
        from sklearn.datasets import load_sample_image
    except ImportError as exc:
        raise ImageError(
            f"sample {name!r} needs scikit-learn: pip install scikit-learn "
            "(or pip install 'convscope[samples]')"
        ) from exc
    try:
        return load_sample_image(filename)
    except Exception as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ImageError(f"cannot load sample {name!r} from scikit-learn: {reason}") from exc
