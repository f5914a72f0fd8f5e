"""Models whose output is not one tensor: which part of it holds the logits.

Detection-style heads, auxiliary classifiers and Hugging Face-style models return a tuple, a dict
or an output object. The ``output=`` selector (of :func:`convscope.load_model`, a
:class:`~convscope.core.bundle.ModelBundle`, :func:`convscope.explain`, :func:`convscope.compare`
and the metrics; ``--output`` in the CLI) names the logits:

- an ``int``: that element of a tuple or list (``output=0``);
- a ``str``: that key of a dict, or attribute of an object (``output="logits"``);
- a callable ``output -> (N, classes) tensor`` for anything else.

While a method runs, :func:`selecting` puts one forward hook on the model itself that replaces
its output by the selected part, so every method, target and metric sees one tensor; the hook is
removed afterwards, also when the method raises. A model that returns a non-tensor without a
selector is an error that shows what it returns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from convscope.errors import ModelError

__all__ = ["OutputSelector", "describe", "not_a_tensor", "select", "selected", "selecting"]

OutputSelector = int | str | Callable[[Any], torch.Tensor] | None

_ACTIVE: dict[int, OutputSelector] = {}  # id(model) -> selector while `selecting` is active


def describe(output: Any, depth: int = 0) -> str:
    """A short description of a model output: ``tuple of 2: [0] (4, 5) tensor, [1] (4, 3) tensor``."""
    if isinstance(output, torch.Tensor):
        return f"{tuple(output.shape)} tensor"
    if depth > 0:
        return type(output).__name__
    if isinstance(output, list | tuple):
        parts = ", ".join(f"[{i}] {describe(v, 1)}" for i, v in enumerate(output[:6]))
        return f"{type(output).__name__} of {len(output)}: {parts}"
    items = output.items() if isinstance(output, dict) else _fields(output)
    if items:
        parts = ", ".join(f"{k!r} {describe(v, 1)}" for k, v in list(items)[:6])
        return f"{type(output).__name__} with {parts}"
    return type(output).__name__


def _fields(output: Any) -> list[tuple[str, Any]]:
    """(name, value) pairs of a mapping-like or plain object (for :func:`describe`)."""
    keys = getattr(output, "keys", None)
    if callable(keys):
        try:
            return [(k, output[k]) for k in keys()]
        except Exception:
            return []
    if not hasattr(output, "__dict__"):
        return []
    return [(k, v) for k, v in vars(output).items() if not k.startswith("_")]


def select(output: Any, selector: OutputSelector) -> Any:
    """The part of ``output`` that ``selector`` names (``output`` itself for None)."""
    if selector is None:
        return output
    try:
        if callable(selector) and not isinstance(selector, str | int):
            part = selector(output)
        elif isinstance(selector, bool):
            raise TypeError
        elif isinstance(selector, int):
            part = output[selector]
        elif isinstance(selector, str):
            if isinstance(output, dict) or hasattr(output, "keys"):
                part = output[selector]
            else:
                part = getattr(output, selector)
        else:
            raise ModelError(
                f"output= is an index, a key or a callable, not a {type(selector).__name__}"
            )
    except ModelError:
        raise
    except (IndexError, KeyError, AttributeError, TypeError) as e:
        raise ModelError(
            f"output={selector!r} does not name a part of the model's output "
            f"({describe(output)}): {type(e).__name__}"
        ) from None
    if not isinstance(part, torch.Tensor):
        raise ModelError(
            f"output={selector!r} gives {describe(part)}, not a tensor of logits; the model "
            f"returns {describe(output)}"
        )
    return part


def not_a_tensor(output: Any) -> ModelError:
    """The error for a model output that is not one tensor and no selector."""
    return ModelError(
        f"the model returns {describe(output)}, not one tensor of logits; say which part is the "
        "logits with output= (an index, a key or a callable; --output in the CLI)"
    )


class _Selected(nn.Module):
    """A TorchScript model (no hooks) and a selector, called as one model."""

    def __init__(self, model: nn.Module, selector: OutputSelector) -> None:
        super().__init__()
        self.inner, self.selector = model, selector

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return select(self.inner(*args, **kwargs), self.selector)


@contextlib.contextmanager
def selecting(model: nn.Module, selector: OutputSelector) -> Iterator[nn.Module]:
    """Within the block the model's output is ``select(output, selector)`` (nothing changes for
    None): yields the model to call, ``model`` itself with a hook on it that is removed on exit
    (a TorchScript model, which takes no hooks, comes wrapped)."""
    if selector is None:
        yield model
        return
    from convscope.core.recorder import is_torchscript

    if is_torchscript(model):
        yield _Selected(model, selector)
        return

    def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
        return select(output, selector)

    handle = model.register_forward_hook(hook)
    _ACTIVE[id(model)] = selector
    try:
        yield model
    finally:
        handle.remove()
        _ACTIVE.pop(id(model), None)


def selected(model: nn.Module, output: Any) -> Any:
    """``output`` of a pass that bypassed ``model.__call__`` (a traced copy of its graph), with the
    selector of an active :func:`selecting` block on ``model`` applied."""
    selector = _ACTIVE.get(id(model))
    return output if selector is None else select(output, selector)
