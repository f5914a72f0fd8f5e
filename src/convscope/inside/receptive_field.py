"""Exact receptive fields: which input box each unit of a layer depends on.

"Each neuron is affected by a patch in the layer below; recursively, a patch in the input"
(lecture 003). :func:`receptive_field` answers it for every position of a layer's map at once, on
any model, by one forward pass of a zero input under :class:`~convscope.inside.rf_trace.FieldTracer`,
which propagates per-position input intervals through each aten operator (convolutions, pooling,
padding, residual additions, concatenations, reused modules: see that module for the rules). The
box of unit ``(i, j)`` is the bounding box of the input pixels it depends on, clipped to the image;
the tests check it against the input-gradient support of single units.

Where one rule holds for every unit, the classic regular geometry (Araujo, Norris & Sim 2019,
"Computing Receptive Fields of Convolutional Neural Networks", Distill) is given too: unit ``i``
reads ``[offset + i*stride, offset + i*stride + size)`` before clipping, per axis.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from convscope.core.guard import preserved
from convscope.core.layers import LayerRef, resolve_layer
from convscope.core.recorder import Recorder
from convscope.errors import ConvscopeError, LayerError
from convscope.inside.rf_trace import Axis, Field, FieldTracer

__all__ = ["ReceptiveField", "receptive_field", "receptive_fields"]

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class _AxisGeometry:
    size: int
    stride: int
    offset: int


class ReceptiveField:
    """The receptive fields of every unit of one layer, for one input size.

    Attributes:
        layer: the layer's name (``"_blocks.4"``, ``"_swish@1"``).
        input_size: (H, W) of the input the fields refer to.
        map_size: (h, w) of the layer's map (dims 2, 3 of an (N, C, H, W) output; 1, 2 of a
            channels-last (N, H, W, C) one).
        rows, cols: (h, 2) and (w, 2) long tensors: the half-open input rows ``[top, bottom)``
            of the units in each map row, and the columns ``[left, right)`` of each map column.
        exact: False when some operator on the way was not followed exactly (its union of
            everything was used, a superset); ``notes`` names them.
        regular: True when one size, stride and offset describe every unit (then :attr:`size`,
            :attr:`stride`, :attr:`offset`); else :attr:`irregular` says why.
    """

    def __init__(
        self,
        layer: str,
        input_size: tuple[int, int],
        map_size: tuple[int, int],
        rows: Axis,
        cols: Axis,
        notes: tuple[str, ...],
    ) -> None:
        self.layer = layer
        self.input_size = input_size
        self.map_size = map_size
        self.notes = notes
        self.exact = not notes
        geos, whys, spans = [], [], []
        for axis, n_map, n_in, label in zip((rows, cols), map_size, input_size, ("rows", "cols")):
            lo, hi = _per_position(axis, n_map, label, layer)
            empty = lo >= hi
            lo = torch.where(empty, 0, lo.clamp(0, n_in))
            hi = torch.where(empty, 0, hi.clamp(0, n_in))
            spans.append(torch.stack([lo, hi], dim=1))
            geo, why = _regular(axis, lo, hi, n_in, label)
            geos.append(geo)
            whys.append(why)
        self.rows, self.cols = spans
        self._geo = geos
        whys = [w for w in whys if w]
        self.irregular = "; ".join(whys)
        self.regular = not whys
        # Python lists for O(1) box(): no tensor indexing per call.
        self._top, self._bottom = self.rows[:, 0].tolist(), self.rows[:, 1].tolist()
        self._left, self._right = self.cols[:, 0].tolist(), self.cols[:, 1].tolist()

    # -- boxes ---------------------------------------------------------------------------------
    def box(self, i: int, j: int) -> Box:
        """The input box ``(top, left, bottom, right)`` (half-open, clipped to the image) of the
        unit at row ``i``, column ``j`` of the layer's map. O(1)."""
        h, w = self.map_size
        if not (_is_index(i) and _is_index(j) and i < h and j < w):
            raise LayerError(
                f"unit ({i}, {j}) is outside the {h}x{w} map of layer {self.layer} "
                f"(rows 0-{h - 1}, columns 0-{w - 1})"
            )
        return self._top[i], self._left[j], self._bottom[i], self._right[j]

    def boxes(self, positions: Any = None) -> torch.Tensor:
        """Boxes of many units at once: ``positions`` is (M, 2) rows and columns (a tensor, an
        array or a list of pairs); returns an (M, 4) long tensor of ``(top, left, bottom, right)``.
        Without positions: every unit, as an (h, w, 4) tensor."""
        h, w = self.map_size
        if positions is None:
            r = self.rows[:, None, :].expand(h, w, 2)
            c = self.cols[None, :, :].expand(h, w, 2)
            return torch.stack([r[..., 0], c[..., 0], r[..., 1], c[..., 1]], dim=-1)
        pos = torch.as_tensor(positions)
        if pos.numel() == 0:
            return torch.empty(0, 4, dtype=torch.long)
        if pos.ndim != 2 or pos.shape[1] != 2 or pos.is_floating_point() or pos.is_complex():
            raise LayerError(
                f"positions are (M, 2) integer rows and columns, not {pos.dtype} of shape "
                f"{tuple(pos.shape)}"
            )
        pos = pos.long().cpu()
        i, j = pos[:, 0], pos[:, 1]
        bad = (i < 0) | (i >= h) | (j < 0) | (j >= w)
        if bool(bad.any()):
            k = int(bad.nonzero()[0, 0])
            raise LayerError(
                f"unit ({int(i[k])}, {int(j[k])}) (position {k}) is outside the {h}x{w} map of "
                f"layer {self.layer}"
            )
        return torch.stack([self.rows[i, 0], self.cols[j, 0], self.rows[i, 1], self.cols[j, 1]], 1)

    # -- regular geometry ----------------------------------------------------------------------
    def _regular_or_raise(self, what: str) -> list[_AxisGeometry]:
        if not self.regular:
            raise LayerError(
                f"layer {self.layer} has no single {what}: {self.irregular}; use box(i, j)"
            )
        return self._geo  # type: ignore[return-value]

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of every unit's box before clipping to the image."""
        g = self._regular_or_raise("receptive-field size")
        return g[0].size, g[1].size

    @property
    def stride(self) -> tuple[int, int]:
        """Input pixels between the boxes of neighbouring units, (rows, columns)."""
        g = self._regular_or_raise("receptive-field stride")
        return g[0].stride, g[1].stride

    @property
    def offset(self) -> tuple[int, int]:
        """(top, left) of unit (0, 0)'s box before clipping (negative where it reaches into the
        padding): unit (i, j) reads rows ``offset[0] + i*stride[0]`` onwards."""
        g = self._regular_or_raise("receptive-field offset")
        return g[0].offset, g[1].offset

    def describe(self) -> str:
        """One line: the map, and the regular geometry or why there is none."""
        h, w = self.map_size
        head = f"{self.layer}: {h}x{w} map on a {self.input_size[0]}x{self.input_size[1]} input"
        if self.regular:
            (sh, sw), (th, tw), (oh, ow) = self.size, self.stride, self.offset
            geo = f"size {sh}x{sw}, stride {th}x{tw}, offset ({oh}, {ow})"
        else:
            geo = f"no single regular geometry ({self.irregular})"
        tail = "" if self.exact else f"; not exact: {'; '.join(self.notes)}"
        return f"{head}; {geo}{tail}"

    def __repr__(self) -> str:
        return f"ReceptiveField({self.describe()})"


def _is_index(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _per_position(axis: Axis, n_map: int, label: str, layer: str) -> tuple[torch.Tensor, ...]:
    if axis.dim is None:
        return axis.lo.expand(n_map).clone(), axis.hi.expand(n_map).clone()
    return axis.lo.clone(), axis.hi.clone()


def _map_dims(f: Field, label: str) -> tuple[int, int]:
    """The output dimensions that follow the input's rows and columns: (2, 3) for (N, C, H, W),
    (1, 2) for a channels-last (N, H, W, C) map."""
    r, c = f.axes[0].dim, f.axes[1].dim
    if r is None and c is None:
        return 2, 3
    r = c - 1 if r is None else r
    c = r + 1 if c is None else c
    if not (0 < r < c <= 3):
        raise LayerError(
            f"layer {label}'s map does not follow the input's rows and columns in order "
            f"(rows along dimension {r}, columns along {c})"
        )
    return r, c


def _regular(
    axis: Axis, lo: torch.Tensor, hi: torch.Tensor, n_in: int, label: str
) -> tuple[_AxisGeometry | None, str]:
    g = axis.geometry
    if g is None:
        return None, f"{label}: {axis.why or 'no regular geometry'}"
    i = torch.arange(lo.shape[0])
    want_lo = (g.offset + i * g.stride).clamp(0, n_in)
    want_hi = (g.offset + i * g.stride + g.size).clamp(0, n_in)
    empty = want_lo >= want_hi  # a unit that reads only padding: (0, 0) as in the boxes
    want_lo, want_hi = torch.where(empty, 0, want_lo), torch.where(empty, 0, want_hi)
    bad = (want_lo != lo) | (want_hi != hi)
    if bool(bad.any()):
        k = int(bad.nonzero()[0, 0])
        return None, (
            f"{label}: unit {k} reads [{int(lo[k])}, {int(hi[k])}), not the "
            f"[{int(want_lo[k])}, {int(want_hi[k])}) of size {g.size}, stride {g.stride}, "
            f"offset {g.offset} (the border differs from the regular grid)"
        )
    return _AxisGeometry(g.size, g.stride, g.offset), ""


# -- tracing -------------------------------------------------------------------------------------
def _input_size(bundle: Any, input_size: Any) -> tuple[int, int]:
    if input_size is None:
        size = bundle.meta.get("input_size")
        pre = bundle.preprocess
        if size is None and hasattr(pre, "crop"):
            size = pre.crop
        if size is None:
            raise ConvscopeError("give input_size=(H, W): the model does not say its input size")
        input_size = size
    if isinstance(input_size, int) and not isinstance(input_size, bool):
        input_size = (input_size, input_size)
    ok = (
        isinstance(input_size, list | tuple)
        and len(input_size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in input_size)
    )
    if not ok:
        raise ConvscopeError(f"input_size is (H, W) with positive integers, not {input_size!r}")
    return int(input_size[0]), int(input_size[1])


def _in_channels(model: nn.Module, channels: int | None) -> int:
    if channels is not None:
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ConvscopeError(f"channels is a positive integer, not {channels!r}")
        return channels
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return int(m.in_channels)
    return 3


def _example(model: nn.Module, channels: int, size: tuple[int, int]) -> torch.Tensor:
    p = next(iter(model.parameters()), None)
    device = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    return torch.zeros(1, channels, *size, device=device, dtype=dtype)


@dataclass(frozen=True)
class _Traced:
    """Every layer call of one traced pass: label -> (output shape or None, field or None)."""

    layers: dict[str, tuple[tuple[int, ...] | None, Field | None]]
    calls: dict[str, int]  # module name -> number of calls
    built: dict[str, ReceptiveField]  # label -> the ReceptiveField already made


# model -> {(input size, channels, architecture signature): _Traced}. The fields depend on the
# architecture only (not on the weights), so a model is traced once per input size.
_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple, _Traced]] = weakref.WeakKeyDictionary()
_CACHE_SIZES = 8


_GEOMETRY_KEYS = ("kernel_size", "padding", "output_size", "scale_factor", "size", "dims")


def _signature(model: nn.Module) -> tuple:
    """What the geometry depends on: the module tree, each module's type and forward function, and
    the settings (``extra_repr``: kernel, stride, padding, dilation, groups, sizes) of the modules
    that have geometric settings (convolutions, pooling, padding, resampling)."""
    return tuple(
        (
            name,
            type(m),
            m.__dict__.get("forward"),
            m.extra_repr() if any(k in m.__dict__ for k in _GEOMETRY_KEYS) else None,
        )
        for name, m in model.named_modules()
    )


def _traced(model: nn.Module, x: torch.Tensor) -> _Traced:
    key = (tuple(x.shape[1:]), x.device, x.dtype, _signature(model))
    per_model = _CACHE.setdefault(model, {})
    if key in per_model:
        return per_model[key]
    refs = [LayerRef(n, m, None) for n, m in model.named_modules() if n]
    tracer = FieldTracer()
    layers: dict[str, tuple[tuple[int, ...] | None, Field | None]] = {}
    with preserved(model), torch.no_grad(), Recorder(model, refs) as rec:
        try:
            with tracer:
                tracer.start(x)
                model(x)
        except ConvscopeError:
            raise
        except Exception as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConvscopeError(
                f"the model does not run on a {tuple(x.shape[1:])} input ({msg}); "
                "give another input_size or channels"
            ) from None
        calls = {name: len(values) for name, values in rec.calls.items()}
        for name, k in rec.order:
            value = rec.calls[name][k]
            label = name if calls[name] == 1 else f"{name}@{k}"
            if isinstance(value, torch.Tensor):
                layers[label] = (tuple(value.shape), tracer.field(value))
            else:
                layers[label] = (None, None)
    tracer.clear()
    traced = _Traced(layers, calls, {})
    if len(per_model) >= _CACHE_SIZES:
        per_model.pop(next(iter(per_model)))
    per_model[key] = traced
    return traced


def _make(traced: _Traced, ref: LayerRef, size: tuple[int, int]) -> ReceptiveField:
    n = traced.calls.get(ref.name, 0)
    if n == 0:
        raise LayerError(f"layer {ref.spec!r} did not run in the forward pass (defined but unused)")
    if ref.call is None and n > 1:
        options = ", ".join(f"{ref.name}@{i}" for i in range(n))
        raise LayerError(
            f"layer {ref.name!r} runs {n} times in one forward pass; name one call: {options}"
        )
    if ref.call is not None and ref.call >= n:
        raise LayerError(
            f"layer {ref.name!r} runs {n} time(s) per forward pass; call @{ref.call} does not exist"
        )
    label = ref.name if n == 1 else f"{ref.name}@{ref.call}"
    if label in traced.built:
        return traced.built[label]
    shape, f = traced.layers[label]
    if shape is None or len(shape) != 4:
        what = "no tensor" if shape is None else f"shape {shape}"
        raise LayerError(
            f"layer {label} outputs {what}, not an (N, C, H, W) map; its units have no position "
            "to give a receptive field for"
        )
    if f is None:
        raise LayerError(f"layer {label} does not depend on the input")
    r, c = _map_dims(f, label)
    rf = ReceptiveField(label, size, (shape[r], shape[c]), f.axes[0], f.axes[1], f.notes)
    traced.built[label] = rf
    return rf


def receptive_field(
    model: Any,
    layer: str | LayerRef | nn.Module,
    input_size: int | tuple[int, int] | None = None,
    *,
    channels: int | None = None,
) -> ReceptiveField:
    """The exact receptive field of every unit of ``layer`` for inputs of ``input_size``.

    Args:
        model: a bundle, a registered name or any ``nn.Module`` (see :func:`convscope.load_model`).
        layer: a layer name (``"_blocks.4"``, ``"_swish@1"`` for a call of a reused module).
        input_size: (H, W) or one int for a square input; default: the bundle's input size.
        channels: input channels; default: those of the first convolution, else 3.

    The first call for a model and input size traces one forward pass of a zero input (no
    gradients) and keeps every layer's fields (they depend on the architecture, not the weights;
    a changed module tree or module setting is traced again); later calls are lookups. Then
    ``rf.box(i, j)`` is O(1) and ``rf.boxes(positions)`` vectorized. The model is not changed.
    """
    from convscope.models import load_model

    bundle = load_model(model)
    size = _input_size(bundle, input_size)
    ref = resolve_layer(bundle.model, layer)
    x = _example(bundle.model, _in_channels(bundle.model, channels), size)
    return _make(_traced(bundle.model, x), ref, size)


def receptive_fields(
    model: Any,
    layers: Sequence[str | LayerRef | nn.Module] | str = "all",
    input_size: int | tuple[int, int] | None = None,
    *,
    channels: int | None = None,
) -> dict[str, ReceptiveField]:
    """Receptive fields of many layers from one traced pass: ``layers="all"`` gives every layer
    call with an (N, C, H, W) output that depends on the input, in the order they run."""
    from convscope.models import load_model

    bundle = load_model(model)
    size = _input_size(bundle, input_size)
    everything = isinstance(layers, str) and layers == "all"
    if not everything:
        items = [layers] if isinstance(layers, str | LayerRef | nn.Module) else list(layers)
        if not items:
            raise LayerError("no layers given")
        refs = [resolve_layer(bundle.model, item) for item in items]
    x = _example(bundle.model, _in_channels(bundle.model, channels), size)
    traced = _traced(bundle.model, x)
    if not everything:
        return {r.spec: rf for r in refs for rf in [_make(traced, r, size)]}
    modules = dict(bundle.model.named_modules())
    out: dict[str, ReceptiveField] = {}
    for label, (shape, f) in traced.layers.items():
        if shape is not None and len(shape) == 4 and f is not None:
            name, _, call = label.partition("@")
            ref = LayerRef(name, modules[name], int(call) if call else None)
            out[label] = _make(traced, ref, size)
    return out
