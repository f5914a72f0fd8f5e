"""Layers: naming and resolving them (listing them and choosing one: :mod:`convscope.core.layer_listing`).

A layer is named by its dotted name in ``model.named_modules()`` (``"layer4.1.conv2"``,
``"_blocks.15"``). A module that runs several times in one forward pass (EfficientNet-Lite0 reuses
one ReLU6 module per block) is named per call with ``@k``: ``"_swish@1"`` is its second call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from convscope.errors import LayerError, did_you_mean

__all__ = ["LayerRef", "resolve_layer"]


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


def _module(model: Any) -> nn.Module:
    """The network of a model or a :class:`~convscope.core.bundle.ModelBundle`."""
    from convscope.core.bundle import ModelBundle

    return model.model if isinstance(model, ModelBundle) else model


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
    if name:  # the common case, found along the dotted path without walking the whole model
        try:
            return LayerRef(name, model.get_submodule(name), call)
        except (AttributeError, RuntimeError):  # not there; TorchScript modules refuse the walk
            pass
    modules = dict(model.named_modules())
    modules.pop("", None)
    if name not in modules:
        raise LayerError(
            f"unknown layer {name!r}{did_you_mean(name, modules)}; "
            "list them with `convscope layers` or convscope.list_layers(model)"
        )
    return LayerRef(name, modules[name], call)
