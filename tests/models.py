"""Tiny models for tests: small enough to check by hand, shaped like real CNNs."""

from __future__ import annotations

import torch
from torch import nn


class TinyCNN(nn.Module):
    """conv-relu-conv-relu(inplace)-conv-relu6 -> global average pool -> linear, 5 classes.

    ``act`` is one ReLU module reused twice (like EfficientNet-Lite0's ReLU6); ``relu_inplace``
    modifies its input in place.
    """

    def __init__(self, n_classes: int = 5, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, stride=2)
        self.relu_inplace = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(8, 16, 3, padding=1)
        self.relu6 = nn.ReLU6()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, n_classes)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv1(x))
        x = self.relu_inplace(self.conv2(x))
        x = self.act(x)  # second call of the reused module
        x = self.relu6(self.conv3(x))
        return self.fc(self.pool(x).flatten(1))


class TinyBN(nn.Module):
    """A model with BatchNorm and Dropout, to catch methods that run it in training mode."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.conv(x)))
        return self.fc(self.drop(x.mean(dim=(2, 3))))


def tiny_input(n: int = 4, size: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def tiny_bundle(size: int = 24):
    """TinyCNN with a preprocessing that resizes and crops to ``size`` pixels (for corpus jobs;
    also a ``MODULE:FACTORY`` model for ``convscope mine``: ``tests.models:tiny_bundle``)."""
    from convscope.core.bundle import ModelBundle, Preprocess

    return ModelBundle(
        TinyCNN(), name="tiny", preprocess=Preprocess(resize=size, crop=size), default_layer="conv3"
    )


class SlowTinyCNN(TinyCNN):
    """TinyCNN that sleeps 40 ms per forward pass, so that a test can kill a job mid-run."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import time

        time.sleep(0.04)
        return super().forward(x)


def slow_tiny_bundle(size: int = 24):
    """:class:`SlowTinyCNN` as :func:`tiny_bundle` (``tests.models:slow_tiny_bundle``)."""
    from convscope.core.bundle import ModelBundle, Preprocess

    return ModelBundle(
        SlowTinyCNN(), name="slow-tiny", preprocess=Preprocess(resize=size, crop=size)
    )
