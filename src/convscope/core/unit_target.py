"""A unit of a layer as the target of an explanation: "the gradient of a particular neuron".

Lecture 003 asks which pixels affect one neuron the most: the gradient of that neuron with respect
to the input (Simonyan et al. 2014's saliency, for a hidden unit instead of a class score), then
the same with guided backpropagation (Springenberg et al. 2015, who show the pattern one unit
detects this way). With ``target="_blocks.10:5"`` (channel 5, the mean of its map) or
``"_blocks.10:5:3:4"`` (channel 5 at row 3, column 4: one neuron), :func:`convscope.explain`
explains the unit's value :math:`S(x) = u(A_\\ell(x))` (see :mod:`convscope.core.units`) instead
of a class score, for the methods where that is defined:

- ``saliency``, ``guided_backprop``, ``deconvnet``, ``smoothgrad``, ``integrated_gradients``:
  the method's own formula with :math:`S` as the score (captum's ``NeuronGradient``,
  ``NeuronGuidedBackprop``, ``NeuronDeconvolution``, ``NeuronIntegratedGradients``);
- ``gradcam`` at a layer that runs before the unit's layer: Grad-CAM's weights are the mean
  gradient of :math:`S` over that layer's map.

The model is run through :class:`UnitScore`, a module whose output is the (N, 1) unit value, so
the methods see an ordinary one-output model: batching of perturbed copies, rectifier rules and
recorders work unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from convscope.core.layers import LayerRef
from convscope.core.recorder import Recorder
from convscope.core.units import Unit, parse_unit
from convscope.errors import LayerError, MethodError

__all__ = ["UNIT_METHODS", "UnitScore", "as_unit_target", "check_unit_method"]

# Methods that take a unit as target (gradcam: at a layer before the unit's).
UNIT_METHODS = (
    "saliency",
    "guided_backprop",
    "deconvnet",
    "smoothgrad",
    "integrated_gradients",
    "gradcam",
)

_WHY_NOT = {
    "cam": "CAM weights a map by the final linear layer's weights of a class; a unit has none",
    "eigencam": "Eigen-CAM does not use the target at all (it is the map's first principal "
    "component)",
    "gradcam++": "Grad-CAM++'s closed-form weights assume the score is the exponential of a "
    "class logit (Chattopadhay et al. 2018)",
    "guided_gradcam": "guided Grad-CAM multiplies by Grad-CAM of the same score at the explained "
    "layer; run guided_backprop and gradcam (at an earlier layer) separately",
    "ablationcam": "Ablation-CAM runs the network's tail after the layer up to the class output",
}


def as_unit_target(target: Any, model: nn.Module) -> tuple[Unit, LayerRef] | None:
    """The (unit, layer) a target names, or None when it names classes.

    A :class:`Unit`, or a string ``"LAYER:K"`` / ``"LAYER:K:I:J"`` whose ``LAYER`` is a module of
    ``model`` (``"LAYER@c:K"`` for a call of a reused module). A bare layer name is not a unit
    target (it would be ambiguous with class names): name a channel."""
    if isinstance(target, Unit):
        unit = target
    elif isinstance(target, str) and ":" in target:
        layer = target.split(":", 1)[0].strip()
        names = {n for n, _ in model.named_modules() if n}
        if layer.rpartition("@")[0] not in names and layer not in names:
            return None  # not a layer of this model: a class name (or an error there)
        unit = parse_unit(target)
    else:
        return None
    if unit.channel is None:
        raise LayerError(
            f"target {unit.spec!r} names a whole layer; name a channel (LAYER:K) or a neuron "
            "(LAYER:K:I:J)"
        )
    return unit, unit.layer_ref(model)


def check_unit_method(method: str) -> None:
    """Raise MethodError with the reason when ``method`` cannot explain a unit."""
    if method in UNIT_METHODS:
        return
    why = _WHY_NOT.get(
        method, f"{method} scores the class output of perturbed inputs; units are not supported"
    )
    raise MethodError(
        f"{method} cannot explain a unit: {why}. Methods that can: {', '.join(UNIT_METHODS)}"
    )


class UnitScore(nn.Module):
    """``model`` seen through one unit: ``forward(x)`` is the (N, 1) value of ``unit`` on the
    batch (a full forward pass of ``model``, the unit's layer recorded on the way)."""

    def __init__(self, model: nn.Module, unit: Unit, ref: LayerRef) -> None:
        super().__init__()
        self.model = model  # a child module, so rectifier rules and recorders reach its layers
        self.unit = unit
        self.ref = ref

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with Recorder(self.model, [self.ref], gradients=True) as rec:
            self.model(x)
            a = rec.activation(self.ref)
        return self.unit.value(a)[:, None]


def layer_runs_before(model: nn.Module, x: torch.Tensor, first: LayerRef, then: LayerRef) -> bool:
    """Whether ``first`` finishes before ``then`` in a forward pass of ``x``."""
    from convscope.core.layer_listing import trace_order

    order, calls = trace_order(model, x[:1])

    def pos(ref: LayerRef) -> int:
        n = len(calls.get(ref.name, []))
        call = ref.call if ref.call is not None else max(n - 1, 0)
        try:
            return order.index((ref.name, call))
        except ValueError:
            raise LayerError(f"layer {ref.spec!r} did not run in the forward pass") from None

    return pos(first) < pos(then)
