from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

# Relative paths in an order that differs from sorted order, in nested folders.
LAYOUT = [f"b/img{i:02d}.png" for i in range(8)] + [f"a/c/p{i:02d}.jpg" for i in range(8)]
LAYOUT += [f"z{i:02d}.png" for i in range(16)]


def write_images(root, names, seed=0, size=(20, 28)):
    rng = np.random.default_rng(seed)
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        a = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
        Image.fromarray(a).save(path, quality=95)
    return root


@pytest.fixture
def folder(tmp_path):
    """32 small random images in nested folders (sorted order: a/c/..., b/..., z...)."""
    return write_images(tmp_path / "corpus", LAYOUT)
