"""Shared by the multi-pass method tests (in the style of tests/parity/test_reference_parity.py)."""

from __future__ import annotations

import torch
from torch import nn

from convscope.core.context import Context, MethodOutput
from convscope.core.registry import get_method
from convscope.core.targets import TargetSpec, resolve_targets
from tests.reference import PHOTOS, RTOL, assert_no_hooks, assert_parity, photos, reference_copy  # noqa: F401

TINY_TARGETS = [0, 3, 1, 4]
LITE0_TARGETS = [967, 281, 3, 500]  # espresso, tabby cat, tiger shark, cliff dwelling


def run_method(
    name: str,
    model: nn.Module,
    x: torch.Tensor,
    target: TargetSpec = "top1",
    score: str = "logit",
    **options,
) -> tuple[MethodOutput, Context]:
    """Call a registered method directly (for options ``explain`` keeps for itself, such as
    ``batch_size``, and for ``extras``). The model must already be in eval mode."""
    ctx = Context(model, x, resolve_targets(target, x.shape[0], score=score))
    return get_method(name).fn(ctx, **options), ctx


class LinearImage(nn.Module):
    """f(x) = W x + b on a flattened image: dS_c/dx = W_c everywhere."""

    def __init__(self, shape: tuple[int, int, int] = (3, 8, 8), n_classes: int = 3) -> None:
        super().__init__()
        self.shape = shape
        self.fc = nn.Linear(shape[0] * shape[1] * shape[2], n_classes)
        with torch.no_grad():
            n = self.fc.weight.numel()
            self.fc.weight.copy_(torch.arange(n, dtype=torch.float32).view_as(self.fc.weight).sin())
            self.fc.bias.copy_(torch.arange(n_classes, dtype=torch.float32))

    def weight(self, c: int) -> torch.Tensor:
        return self.fc.weight[c].detach().view(self.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))
