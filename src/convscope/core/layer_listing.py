"""Layers in the order they run: listing them, choosing the CAM layer, finding the parametric ones.

Each function traces one forward pass of an example through the :class:`~convscope.core.recorder.Recorder`
(shapes only, under :func:`~convscope.core.guard.preserved` and ``torch.no_grad``) and reads the
order in which modules ran; a module run several times is listed per call (``"_swish@1"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from convscope.core.guard import preserved
from convscope.core.layers import LayerRef, _module
from convscope.core.recorder import Recorder, is_torchscript
from convscope.errors import LayerError

__all__ = ["LayerInfo", "auto_layer", "list_layers", "parametric_layers", "trace_order"]


@dataclass(frozen=True)
class LayerInfo:
    """One row of :func:`list_layers`."""

    name: str
    type: str
    output_shape: Any
    params: int


def _example(model: Any, example: torch.Tensor | None) -> torch.Tensor:
    """``example``, or for a bundle without one a zero image at its input size."""
    if example is not None:
        return example
    from convscope.core.bundle import ModelBundle

    if not isinstance(model, ModelBundle):
        raise LayerError("an example input is needed to trace a plain module's layers")
    size = getattr(model.preprocess, "crop", None) or model.meta.get("input_size", 224)
    return torch.zeros(1, 3, size, size, device=model.device)


def trace_order(model: nn.Module, example: torch.Tensor) -> tuple[list[tuple[str, int]], dict]:
    """One forward pass of ``example`` (eval mode, no gradients, the model restored after):
    ``(order, calls)``: every module call as ``(name, k)`` in the order the calls finished, and
    each module's output shapes per call (:class:`~convscope.core.recorder.Recorder`, shapes only)."""
    with preserved(model), torch.no_grad(), Recorder(model, "all") as rec:
        model(example)
    return rec.order, rec.calls


def list_layers(model: nn.Module, example: torch.Tensor | None = None) -> list[LayerInfo]:
    """Every layer in the order it runs on ``example`` (one row per call), with output shapes.

    ``model`` is a module or a bundle; for a bundle ``example`` may be left out (a zero image at
    the bundle's input size). Modules that never run are listed last with output shape None.
    """
    example = _example(model, example)
    model = _module(model)
    if is_torchscript(model):  # no hooks: names and types only, no shapes
        return [
            LayerInfo(n, _type_name(m), None, sum(p.numel() for p in m.parameters()))
            for n, m in model.named_modules()
            if n
        ]
    order, calls = trace_order(model, example)
    modules = dict(model.named_modules())
    rows: list[LayerInfo] = []
    for name, k in order:
        m = modules[name]
        label = name if len(calls[name]) == 1 else f"{name}@{k}"
        rows.append(
            LayerInfo(
                label, type(m).__name__, calls[name][k], sum(p.numel() for p in m.parameters())
            )
        )
    for name, m in modules.items():
        if name and not calls.get(name):
            rows.append(
                LayerInfo(name, type(m).__name__, None, sum(p.numel() for p in m.parameters()))
            )
    return rows


def _type_name(module: nn.Module) -> str:
    """A module's class name; a TorchScript submodule's original one (``Conv2d``, not
    ``RecursiveScriptModule``)."""
    return getattr(module, "original_name", None) or type(module).__name__


def auto_layer(model: nn.Module, example: torch.Tensor) -> LayerRef:
    """The last layer to produce a 4-D (N, C, H, W) output with H*W > 1: the last spatial feature map
    before global pooling (``model``: a module or a bundle). Raises LayerError if there is none."""
    model = _module(model)
    order, calls = trace_order(model, example[:1])
    modules = dict(model.named_modules())
    for name, k in reversed(order):
        shape = calls[name][k]
        is_map = isinstance(shape, tuple) and len(shape) == 4
        if is_map and all(isinstance(s, int) for s in shape) and shape[2] * shape[3] > 1:
            return LayerRef(name, modules[name], k if len(calls[name]) > 1 else None)
    raise LayerError("the model has no layer with a 4-D (N, C, H, W) output; name a layer")


def parametric_layers(model: nn.Module, example: torch.Tensor) -> list[str]:
    """The names of the modules with parameters of their own that run on ``example``, in reverse
    order of execution (the last to run first; a module run several times counts at its last
    call). Modules that do not run, and parameters of the root module itself, are left out."""
    order, _ = trace_order(model, example)
    last: dict[str, int] = {}
    for pos, (name, _) in enumerate(order):
        last[name] = pos
    own = {
        n for n, m in model.named_modules() if n and any(True for _ in m.parameters(recurse=False))
    }
    return sorted((n for n in own if n in last), key=lambda n: -last[n])
