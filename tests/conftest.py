from __future__ import annotations

import os

import pytest
import torch

from tests.models import TinyCNN, tiny_input

torch.set_num_threads(2)


def pytest_addoption(parser):
    parser.addoption(
        "--device",
        default=None,
        help="device for the parity tests (default: $CONVSCOPE_TEST_DEVICE, else cpu); "
        "scripts/gpu_check.py runs them with cuda",
    )


@pytest.fixture(scope="session")
def device(request) -> torch.device:
    """The device the parity tests run on: ``--device``, else ``$CONVSCOPE_TEST_DEVICE``, else
    the CPU. A device that is not there is an error, not a silent CPU run."""
    name = request.config.getoption("--device") or os.environ.get("CONVSCOPE_TEST_DEVICE", "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError(f"parity tests asked for {name}, but CUDA is not available")
    return dev


@pytest.fixture(scope="session")
def lite0_on_device(lite0, device, lite0_x):
    """(bundle, input batch) of the bundled EfficientNet-Lite0 on the parity tests' device (on
    the CPU: the shared ``lite0`` fixture; elsewhere a copy of it moved there)."""
    if device.type == "cpu":
        return lite0, lite0_x
    import copy
    import dataclasses

    bundle = dataclasses.replace(lite0, model=copy.deepcopy(lite0.model).to(device))
    return bundle, lite0_x.to(device)


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
