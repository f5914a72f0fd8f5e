from __future__ import annotations

import pytest
import torch

from tests.cam.helpers import photos


@pytest.fixture(scope="session")
def lite0_x(lite0) -> torch.Tensor:
    """The four sample photos, preprocessed for EfficientNet-Lite0: (4, 3, 224, 224)."""
    x, _ = lite0.prepare(photos())
    assert tuple(x.shape) == (4, 3, 224, 224)
    return x
