"""Bundled sample images, usable anywhere an image is expected as ``"sample:NAME"``.

The catalog (which photos, from scikit-image and scikit-learn) is
:mod:`convscope.data.sample_catalog`; this module lists them and loads one as RGB.
"""

from __future__ import annotations

from PIL import Image

from convscope.data.images import load_image
from convscope.data.sample_catalog import sample_source, samples

__all__ = ["load_sample", "samples"]


def load_sample(name: str) -> Image.Image:
    """Load the sample image ``name`` (see :func:`samples`) as an 8-bit RGB PIL image."""
    return load_image(sample_source(name))
