"""What a method receives and returns.

A method is a function ``fn(ctx, **options) -> MethodOutput`` registered with
:func:`convscope.core.registry.register_method`. The core hands it a :class:`Context` (the model,
one batch on the model's device, the resolved targets and layers) with the model already in eval
mode inside :func:`convscope.core.guard.preserved`; the method returns raw maps, and the core
upsamples, wraps and renders them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from convscope.core.layers import LayerRef
from convscope.core.targets import Target

__all__ = ["Context", "MethodOutput"]


@dataclass
class Context:
    """One batch to explain: ``x`` is (N, C, H, W) on the model's device."""

    model: nn.Module
    x: torch.Tensor
    target: Target
    layers: list[LayerRef] = field(default_factory=list)
    progress: bool = False  # multi-pass methods show a bar over their passes

    @property
    def layer(self) -> LayerRef:
        """The single layer of a one-layer method."""
        return self.layers[0]


@dataclass
class MethodOutput:
    """Raw maps as the paper defines them, and the model's output (N, classes).

    ``maps`` is one (N, h, w) tensor, or, for layer methods given several layers, a list with one
    (N, h_i, w_i) tensor per layer in ``ctx.layers`` order (the core upsamples and fuses them).
    """

    maps: torch.Tensor | list[torch.Tensor]
    output: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)
