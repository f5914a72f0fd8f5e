"""Tiny models whose feature-visualization gradients are known by hand."""

from __future__ import annotations

import torch
from torch import nn

from convscope.core.bundle import ModelBundle, Preprocess

# Lite0-like preprocessing: input = (pixel * 255 - 127) / 128, so center = 127/255, spread = 128/255
PRE = Preprocess(resize=4, crop=4, mean=(127.0,) * 3, std=(128.0,) * 3, scale=1.0)
CENTER = 127 / 255
SPREAD = 128 / 255


class Linear4(nn.Module):
    """logits = W @ flatten(x) + b on 4x4 RGB inputs, 3 classes: d logit_c / d input = W_c."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc = nn.Linear(48, 3)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(3, 48, generator=g))
            self.fc.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


class Counting(nn.Module):
    """Wraps a model and counts its forward calls (to check that errors come before the loop)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


def linear_bundle(seed: int = 0) -> ModelBundle:
    return ModelBundle(Linear4(seed), name="linear4", preprocess=PRE, class_names=["a", "b", "c"])
