"""Weight templates: a linear layer that reads a flattened image, seen as one image per unit.

A unit ``j`` of ``nn.Linear`` computes ``o_j = W[j] . x + b_j`` on the flattened input ``x``. When
``x`` is an image of shape (C, H, W) flattened in that order, ``W[j]`` reshaped to (C, H, W) is the
image the unit responds to most: for inputs of a given norm, ``W[j] . x`` is largest when ``x``
points along ``W[j]`` (the dot-product argument of the lecture notes, CSC411 "How neural networks
see", after Zeiler & Fergus 2014). For softmax regression these are the class templates; for an
MLP's first layer, the hidden units' features, and ``hidden_to_output=True`` adds what each hidden
unit means for the answer: its weights to every output unit.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torch import nn

from convscope.core.layers import resolve_layer
from convscope.errors import LayerError
from convscope.inside.tracing import Call, example_input, trace_calls

__all__ = ["WeightTemplates", "weight_templates"]


@dataclass
class WeightTemplates:
    """Each unit of a linear layer as an image of its input.

    Attributes:
        layer: the linear layer's name.
        templates: (units, C, H, W) the weight rows reshaped to the input image, unscaled (a
            detached CPU copy).
        bias: (units,) the layer's bias, or None.
        unit_names: one name per unit (the class names for an output layer, else ``"unit j"``).
        output_layer: with ``hidden_to_output``: the linear layer that reads these units.
        output_weights: (outputs, units) that layer's weights, or None.
        output_bias: (outputs,) its bias, or None.
        output_names: one name per output unit (class names when known).
    """

    layer: str
    templates: torch.Tensor
    bias: torch.Tensor | None
    unit_names: list[str]
    output_layer: str | None = None
    output_weights: torch.Tensor | None = None
    output_bias: torch.Tensor | None = None
    output_names: list[str] | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.templates.shape[1:])  # type: ignore[return-value]

    def _units(self, units: Sequence[int] | None, limit: int) -> list[int]:
        n = self.templates.shape[0]
        if units is None:
            if n <= limit:
                return list(range(n))
            if self.output_weights is not None:
                # the hidden units the outputs lean on most
                strength = self.output_weights.float().norm(dim=0)
            else:
                strength = self.templates.float().reshape(n, -1).norm(dim=1)
            return sorted(strength.argsort(descending=True)[:limit].tolist())
        picked = [int(u) for u in units]
        bad = [u for u in picked if not 0 <= u < n]
        if bad:
            raise LayerError(f"unit(s) {bad} out of range: layer {self.layer} has {n} units")
        if not picked:
            raise LayerError("no units chosen")
        return picked

    def pixels(
        self,
        units: Sequence[int] | None = None,
        *,
        scale: str = "shared",
        cmap: str | None = None,
    ) -> torch.Tensor:
        """(n, H, W, 3) uint8: each chosen unit's template by the rule of
        :mod:`convscope.viz.weights` (0 is mid-grey; a 3-channel input is drawn as RGB), on one
        symmetric scale for all units (``scale="shared"``: the largest ``|w|`` over every unit of
        the layer) or one per unit (``"unit"``). Inputs with another number of channels are drawn
        as their channel mean."""
        from convscope.viz.weights import symmetric_scale, weight_pixels

        idx = list(range(self.templates.shape[0])) if units is None else list(units)
        t = self.templates.float()
        if t.shape[1] not in (1, 3):
            t = t.mean(dim=1, keepdim=True)
        if scale == "shared":
            s = symmetric_scale(t)
            return weight_pixels(t[idx], s, cmap)
        if scale == "unit":
            sel = t[idx]
            return weight_pixels(sel, symmetric_scale(sel, "item"), cmap)
        raise LayerError(f"scale is 'shared' or 'unit', not {scale!r}")

    def grid(
        self,
        units: Sequence[int] | None = None,
        *,
        scale: str = "shared",
        cell: int = 96,
        cols: int | None = None,
        cmap: str | None = None,
        hidden_to_output: bool | None = None,
    ) -> Image.Image:
        """A picture of the templates (one cell per unit, labelled, upscaled by nearest neighbour
        to about ``cell`` pixels), or, when the view has output weights (``hidden_to_output``),
        the lecture's figure: each hidden unit's template beside a bar chart of its weights to the
        outputs, titled with its bias. ``units=None``: every unit, or the 16 the outputs weigh most
        (largest norm of output weights; without them, of the template) when there are more."""
        from convscope.viz.weights import template_bars, tile, upscale

        bars = self.output_weights is not None if hidden_to_output is None else hidden_to_output
        if bars and self.output_weights is None:
            raise LayerError(
                "no output weights: call weight_templates(..., hidden_to_output=True) first"
            )
        chosen = self._units(units, 16 if bars else 256)
        pix = self.pixels(chosen, scale=scale, cmap=cmap)
        if bars:
            assert self.output_weights is not None and self.output_names is not None
            titles = [
                f"{self.unit_names[u]}"
                + (f"  bias {float(self.bias[u]):+.3g}" if self.bias is not None else "")
                for u in chosen
            ]
            return template_bars(
                pix, self.output_weights[:, chosen].T, self.output_names, titles, cols=cols or 2
            )
        h, w = pix.shape[1:3]
        factor = max(1, cell // max(h, w))
        cells = upscale(pix, factor)
        ncols = cols or min(len(chosen), 10)
        return tile(cells, ncols, pad=4, captions=[self.unit_names[u] for u in chosen])

    def save(self, path: str | os.PathLike, **grid_options: Any) -> str:
        """Write :meth:`grid` as a PNG at ``path`` (all or nothing); returns the path."""
        from pathlib import Path

        from convscope.fileio import write_all
        from convscope.viz.render import png_bytes

        p = Path(path)
        write_all(p.parent, {p.name: png_bytes(self.grid(**grid_options))})
        return str(p)

    def _repr_png_(self) -> bytes:
        from convscope.viz.render import png_bytes

        return png_bytes(self.grid())


def weight_templates(
    model: Any,
    layer: str | nn.Module = "first",
    input_shape: Sequence[int] | None = None,
    *,
    hidden_to_output: bool = False,
    output_layer: str | nn.Module | None = None,
    class_names: Sequence[str] | None = None,
) -> WeightTemplates:
    """Each unit of a linear layer that reads a flattened image, as an image (lecture 004).

    Args:
        model: a bundle, a registered name or any ``nn.Module`` (:func:`convscope.load_model`).
        layer: an ``nn.Linear`` reading the flattened input (softmax regression's only layer, an
            MLP's first), or ``"first"``: the first linear layer the input meets (by tracing one
            forward pass).
        input_shape: the image the model reads, (C, H, W) or (H, W); default 3 channels at the
            bundle's crop size. The model must run on it, and the layer must read exactly C*H*W
            features: its weight row ``j`` becomes template ``j`` by ``reshape(C, H, W)`` (the
            order ``torch.flatten`` uses).
        hidden_to_output: also read the linear layer that takes these units as its input (the
            next one in the forward pass with ``in_features == units``), for the figure of each
            hidden unit's template beside its weights to every output.
        output_layer: that layer, when it should not be found automatically.
        class_names: names of the output units (default the bundle's class names).

    Returns:
        A :class:`WeightTemplates`; ``.templates`` is (units, C, H, W), unscaled.
    """
    from convscope.models import load_model

    bundle = load_model(model)
    net = bundle.model
    example = example_input(bundle, input_shape)
    c, h, w = example.shape[1:]
    calls = trace_calls(net, example)
    names = list(class_names) if class_names is not None else bundle.class_names

    if isinstance(layer, str) and layer.strip() == "first":
        call = next((k for k in calls if isinstance(k.module, nn.Linear)), None)
        if call is None:
            raise LayerError("the model has no linear layer (nn.Linear) in its forward pass")
        ref_name, lin = call.name, call.module
    else:
        ref = resolve_layer(net, layer)
        ref_name, lin = ref.name, ref.module
        if not isinstance(lin, nn.Linear):
            raise LayerError(
                f"layer {ref.spec!r} is a {type(lin).__name__}, not a linear layer (nn.Linear); "
                "weight templates read a linear layer's weights"
                + (" (use convscope.filters for a convolution)" if _has_4d_weight(lin) else "")
            )
        call = next((k for k in calls if k.name == ref_name), None)
        if call is None:
            raise LayerError(f"layer {ref_name!r} does not run when the model reads {(c, h, w)}")
    assert isinstance(lin, nn.Linear)
    d = c * h * w
    if lin.in_features != d:
        raise LayerError(
            f"layer {ref_name!r} reads {lin.in_features} features, but an image of shape "
            f"{(c, h, w)} has {d}: it does not read the flattened image (give the input_shape the "
            "model reads, or a linear layer that reads the image)"
        )
    weight = lin.weight.detach().to("cpu", copy=True)
    bias = None if lin.bias is None else lin.bias.detach().to("cpu", copy=True)
    units = weight.shape[0]
    view = WeightTemplates(
        layer=ref_name,
        templates=weight.reshape(units, c, h, w),
        bias=bias,
        unit_names=list(names)
        if names is not None and len(names) == units and not hidden_to_output
        else [f"unit {j}" for j in range(units)],
    )
    if hidden_to_output:
        out = _output_layer(net, calls, call, units, output_layer)
        k = out.out_features
        view.output_layer = next(n for n, m in net.named_modules() if m is out)
        view.output_weights = out.weight.detach().to("cpu", copy=True)
        view.output_bias = None if out.bias is None else out.bias.detach().to("cpu", copy=True)
        view.output_names = (
            [n.split(",")[0].strip() for n in names]
            if names is not None and len(names) == k
            else [f"output {i}" for i in range(k)]
        )
    return view


def _has_4d_weight(module: nn.Module) -> bool:
    w = getattr(module, "weight", None)
    return isinstance(w, torch.Tensor) and w.ndim == 4


def _output_layer(
    net: nn.Module, calls: list[Call], first: Call, units: int, given: str | nn.Module | None
) -> nn.Linear:
    if given is not None:
        ref = resolve_layer(net, given)
        if not isinstance(ref.module, nn.Linear) or ref.module.in_features != units:
            raise LayerError(
                f"output layer {ref.spec!r} must be an nn.Linear reading the {units} units of "
                f"{first.name}"
            )
        return ref.module
    after = calls[calls.index(first) + 1 :]
    for k in after:
        if isinstance(k.module, nn.Linear) and k.module.in_features == units:
            return k.module
    raise LayerError(
        f"no linear layer after {first.name!r} reads its {units} units; name it with output_layer="
    )
