"""Layers: listing them, resolving names, and choosing one automatically.

A layer is named by its dotted name in ``model.named_modules()`` (``"layer4.1.conv2"``,
``"_blocks.15"``). A module that runs several times in one forward pass (EfficientNet-Lite0 reuses
one ReLU6 module per block) is named per call with ``@k``: ``"_swish@1"`` is its second call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from convscope.errors import LayerError, did_you_mean

__all__ = ["LayerInfo", "LayerRef", "auto_layer", "list_layers", "resolve_layer"]


@dataclass(frozen=True)
class LayerRef:
    """A resolved layer: its dotted ``name``, the ``module``, and which ``call`` (None: the only one)."""

    name: str
    module: nn.Module
    call: int | None = None

    @property
    def spec(self) -> str:
        return self.name if self.call is None else f"{self.name}@{self.call}"

    def __str__(self) -> str:
        return self.spec


@dataclass(frozen=True)
class LayerInfo:
    """One row of :func:`list_layers`."""

    name: str
    type: str
    output_shape: Any
    params: int


def _module(model: Any) -> nn.Module:
    """The network of a model or a :class:`~convscope.core.bundle.ModelBundle`."""
    from convscope.core.bundle import ModelBundle

    return model.model if isinstance(model, ModelBundle) else model


def _example(model: Any, example: torch.Tensor | None) -> torch.Tensor:
    """``example``, or for a bundle without one a zero image at its input size."""
    if example is not None:
        return example
    from convscope.core.bundle import ModelBundle

    if not isinstance(model, ModelBundle):
        raise LayerError("an example input is needed to trace a plain module's layers")
    size = getattr(model.preprocess, "crop", None) or model.meta.get("input_size", 224)
    return torch.zeros(1, 3, size, size, device=model.device)


def resolve_layer(model: nn.Module, layer: str | LayerRef | nn.Module) -> LayerRef:
    """Turn a name (``"a.b"``, ``"a.b@2"``), a module of ``model`` or a LayerRef into a LayerRef.
    ``model`` may be a module or a bundle."""
    model = _module(model)
    if isinstance(layer, LayerRef):
        return layer
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer and name:
                return LayerRef(name, module, None)
        raise LayerError(
            f"the module {type(layer).__name__} given as layer is not part of the model"
        )
    if not isinstance(layer, str):
        raise LayerError(f"a layer is a name or a module, not {type(layer).__name__}")
    spec = layer.strip()
    name, call = spec, None
    if "@" in spec:
        name, _, idx = spec.rpartition("@")
        if not idx.isdigit():
            raise LayerError(f"bad layer {layer!r}: the part after '@' must be a call number")
        call = int(idx)
    modules = dict(model.named_modules())
    modules.pop("", None)
    if name not in modules:
        raise LayerError(
            f"unknown layer {name!r}{did_you_mean(name, modules)}; "
            "list them with `convscope layers` or convscope.list_layers(model)"
        )
    return LayerRef(name, modules[name], call)


def _trace(model: nn.Module, example: torch.Tensor) -> tuple[list[tuple[str, int]], dict]:
    from convscope.core.guard import preserved
    from convscope.core.recorder import Recorder

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
    from convscope.core.recorder import is_torchscript

    if is_torchscript(model):  # no hooks: names and types only, no shapes
        return [
            LayerInfo(n, _type_name(m), None, sum(p.numel() for p in m.parameters()))
            for n, m in model.named_modules()
            if n
        ]
    order, calls = _trace(model, example)
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
    order, calls = _trace(model, example[:1])
    modules = dict(model.named_modules())
    for name, k in reversed(order):
        shape = calls[name][k]
        is_map = isinstance(shape, tuple) and len(shape) == 4
        if is_map and all(isinstance(s, int) for s in shape) and shape[2] * shape[3] > 1:
            return LayerRef(name, modules[name], k if len(calls[name]) > 1 else None)
    raise LayerError("the model has no layer with a 4-D (N, C, H, W) output; name a layer")
