from __future__ import annotations

import pytest
import torch

from tests.models import TinyCNN, tiny_input

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def lite0():
    """The bundled EfficientNet-Lite0 (loaded once per test session)."""
    import convscope

    return convscope.load_model("efficientnet_lite0")


@pytest.fixture(scope="session")
def lite0_x(lite0) -> torch.Tensor:
    """The four photos of tests/reference.py, preprocessed for EfficientNet-Lite0: (4, 3, 224, 224)."""
    from tests.reference import photos

    x, _ = lite0.prepare(photos())
    assert tuple(x.shape) == (4, 3, 224, 224)
    return x


@pytest.fixture
def tiny():
    return TinyCNN()


@pytest.fixture
def tiny_x():
    return tiny_input()
