"""One forward pass, every module call in order: what "the first convolution the input meets",
"the stages of the pipeline" and "every 4-D layer" are found from.

The order comes from :func:`convscope.core.layer_listing.trace_order` (the recorder in shapes-only
mode), so it is the order in which modules *finish* running on the example. For a leaf module (a
convolution, a linear layer) that is also the order in which the input reaches it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from convscope.core.layer_listing import trace_order
from convscope.core.layers import LayerRef
from convscope.errors import ConvscopeError, ModelError

__all__ = ["Call", "example_input", "trace_calls"]


@dataclass(frozen=True)
class Call:
    """One call of a module in a traced forward pass: ``spec`` is its layer name (``name@k`` for a
    module that runs several times), ``shape`` its output shape (with the batch dimension)."""

    spec: str
    name: str
    call: int | None
    module: nn.Module
    shape: Any

    @property
    def ref(self) -> LayerRef:
        return LayerRef(self.name, self.module, self.call)

    @property
    def is_map(self) -> bool:
        """A 4-D (N, C, h, w) output with more than one position."""
        s = self.shape
        return (
            isinstance(s, tuple)
            and len(s) == 4
            and all(isinstance(v, int) for v in s)
            and s[2] * s[3] > 1
        )

    @property
    def is_leaf(self) -> bool:
        return next(iter(self.module.children()), None) is None


def example_input(bundle: Any, input_shape: Sequence[int] | None = None) -> torch.Tensor:
    """A (1, C, H, W) zero input on the bundle's device: ``input_shape`` (C, H, W) or (H, W) if
    given, else 3 channels at the bundle's crop size (224 when it has none)."""
    if input_shape is None:
        size = int(getattr(bundle.preprocess, "crop", 224))
        shape: tuple[int, ...] = (3, size, size)
    else:
        shape = tuple(int(s) for s in input_shape)
        if len(shape) == 2:
            shape = (1, *shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ConvscopeError(
                f"an input shape is (C, H, W) or (H, W) with positive sizes, not {tuple(input_shape)}"
            )
    return torch.zeros(1, *shape, device=bundle.device)


def trace_calls(model: nn.Module, example: torch.Tensor) -> list[Call]:
    """Every module call of one forward pass of ``example``, in the order the calls finished.

    The model runs in eval mode without gradients and is restored afterwards; a model that cannot
    run on ``example`` is a :class:`ModelError` naming the input shape."""
    try:
        order, calls = trace_order(model, example)
    except ConvscopeError:
        raise
    except Exception as e:
        raise ModelError(
            f"the model does not run on an input of shape {tuple(example.shape)}: "
            f"{type(e).__name__}: {' '.join(str(e).split())}"
        ) from None
    modules = dict(model.named_modules())
    out = []
    for name, k in order:
        many = len(calls[name]) > 1
        out.append(
            Call(
                f"{name}@{k}" if many else name,
                name,
                k if many else None,
                modules[name],
                calls[name][k],
            )
        )
    return out
