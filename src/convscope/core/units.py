"""Units: one way to name a layer, a channel of it, or one neuron of it.

A :class:`Unit` is what every capability that points *inside* a network takes: a neuron target for
the gradient methods, a feature-visualization objective, a top-k mining job, a unit page. It is a
layer reference plus an optional channel and an optional spatial position, in the spirit of
captum's neuron selectors and Lucid's ``"layer:channel"`` objectives.

The string syntax (what the CLI and the Python API accept)::

    LAYER            the whole layer              "_blocks.10"
    LAYER:K          channel K                    "_blocks.10:5"     (mean of its map)
    LAYER:K:I:J      channel K at row I, col J    "_blocks.10:5:3:4" (one neuron)

``LAYER`` is a layer name as everywhere else (``"_swish@1"`` names a call of a reused module),
resolved with the same closest-match errors. A unit's value on a layer's output ``a`` is:

- whole layer: ``a`` itself (no reduction; callers choose one);
- channel K of a 4-D map (N, C, H, W): ``mean_{i,j} a[:, K, i, j]``; of a 2-D output (N, C): ``a[:, K]``;
- neuron (K, I, J): ``a[:, K, I, J]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from convscope.core.layers import LayerRef, resolve_layer
from convscope.errors import LayerError

__all__ = ["Unit", "parse_unit", "resolve_unit"]


@dataclass(frozen=True)
class Unit:
    """A layer (``layer``: a name such as ``"_blocks.10"`` or ``"_swish@1"``), optionally one
    ``channel`` of it, optionally one ``position`` (row, column) of that channel's map."""

    layer: str
    channel: int | None = None
    position: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.layer, str) or not self.layer.strip():
            raise LayerError(f"a unit's layer is a non-empty name, not {self.layer!r}")
        if self.channel is not None and (
            isinstance(self.channel, bool) or not isinstance(self.channel, int) or self.channel < 0
        ):
            raise LayerError(f"a unit's channel is an integer >= 0, not {self.channel!r}")
        if self.position is not None:
            if self.channel is None:
                raise LayerError("a unit with a position needs a channel: LAYER:K:I:J")
            pos = tuple(self.position)
            if len(pos) != 2 or not all(
                isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in pos
            ):
                raise LayerError(f"a unit's position is two integers >= 0, not {self.position!r}")
            object.__setattr__(self, "position", pos)

    # -- naming ---------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        """``"layer"``, ``"channel"`` or ``"neuron"``."""
        if self.channel is None:
            return "layer"
        return "channel" if self.position is None else "neuron"

    @property
    def spec(self) -> str:
        """The string form, which :func:`parse_unit` reads back."""
        parts = [self.layer]
        if self.channel is not None:
            parts.append(str(self.channel))
        if self.position is not None:
            parts += [str(self.position[0]), str(self.position[1])]
        return ":".join(parts)

    def __str__(self) -> str:
        return self.spec

    # -- resolving against a model --------------------------------------------------------------
    def layer_ref(self, model: nn.Module) -> LayerRef:
        """The layer as a :class:`LayerRef` of ``model`` (closest-match error when unknown)."""
        return resolve_layer(model, self.layer)

    def check(self, shape: tuple[int, ...] | torch.Size) -> None:
        """Raise LayerError unless this unit exists in a layer output of ``shape`` (with batch)."""
        shape = tuple(shape)
        if self.channel is None:
            return
        if len(shape) not in (2, 4):
            raise LayerError(
                f"unit {self.spec}: layer {self.layer} has output shape {shape}; a channel needs "
                "an (N, C) or (N, C, H, W) output"
            )
        if self.channel >= shape[1]:
            raise LayerError(
                f"unit {self.spec}: channel {self.channel} is out of range; "
                f"layer {self.layer} has {shape[1]} channels (0-{shape[1] - 1})"
            )
        if self.position is not None:
            if len(shape) != 4:
                raise LayerError(
                    f"unit {self.spec}: a position needs a 4-D (N, C, H, W) layer output; "
                    f"{self.layer} gives {shape}"
                )
            i, j = self.position
            if i >= shape[2] or j >= shape[3]:
                raise LayerError(
                    f"unit {self.spec}: position ({i}, {j}) is outside the {shape[2]}x{shape[3]} "
                    f"map of {self.layer}"
                )

    def value(self, activation: torch.Tensor) -> torch.Tensor:
        """This unit's value per image on ``activation``, the layer's batched output: (N,) for a
        channel or a neuron, the activation itself for a whole layer."""
        self.check(activation.shape)
        if self.channel is None:
            return activation
        a = activation[:, self.channel]
        if self.position is not None:
            return a[:, self.position[0], self.position[1]]
        return a.mean(dim=(1, 2)) if a.ndim == 3 else a

    def at(self, channel: int | None = None, position: tuple[int, int] | None = None) -> Unit:
        """The same layer with another channel and/or position."""
        return Unit(self.layer, self.channel if channel is None else channel, position)


def parse_unit(spec: str | Unit) -> Unit:
    """Read ``"LAYER"``, ``"LAYER:K"`` or ``"LAYER:K:I:J"`` (a :class:`Unit` is returned as is).

    Layer names cannot contain ``:``. Raises LayerError with the expected syntax otherwise."""
    if isinstance(spec, Unit):
        return spec
    if not isinstance(spec, str):
        raise LayerError(f"a unit is a string LAYER[:K[:I:J]] or a Unit, not {type(spec).__name__}")
    parts = [p.strip() for p in spec.strip().split(":")]
    if not parts[0] or len(parts) not in (1, 2, 4) or not all(p.isdigit() for p in parts[1:]):
        raise LayerError(
            f"bad unit {spec!r}: write LAYER, LAYER:K (channel K) or LAYER:K:I:J (channel K at "
            "row I, column J), with K, I, J integers >= 0"
        )
    nums = [int(p) for p in parts[1:]]
    if len(nums) == 0:
        return Unit(parts[0])
    if len(nums) == 1:
        return Unit(parts[0], nums[0])
    return Unit(parts[0], nums[0], (nums[1], nums[2]))


def resolve_unit(model: nn.Module, spec: str | Unit) -> tuple[Unit, LayerRef]:
    """Parse ``spec`` and resolve its layer in ``model`` (closest-match error when unknown)."""
    unit = parse_unit(spec)
    return unit, unit.layer_ref(model)
