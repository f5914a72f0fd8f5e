"""Receptive fields by interval propagation through one traced forward pass.

Every tensor computed from the input carries, for each input axis (rows, columns), the input
interval each of its positions depends on: per position of the tensor dimension that follows that
axis (``lo[i]``, ``hi[i]``, half-open), or one interval for the whole tensor once the axis has been
mixed (a global pool, a flatten). The rules follow the aten operators seen by a
:class:`~torch.utils._python_dispatch.TorchDispatchMode` on one forward pass of a zero input, so
residual additions, concatenations, reused modules, functional calls and TorchScript models are
covered alike, whatever the module tree looks like:

- convolution, max/avg pooling (padding, stride, dilation, ceil mode), transposed convolution:
  unit ``i`` reads rows ``i*s - p + t*d`` (``t < k``) that lie inside the input; its interval is the
  union of theirs (padding reads nothing);
- adaptive pooling: bin ``i`` reads ``[floor(i*n/m), ceil((i+1)*n/m))``;
- zero, reflection and replication padding, slicing, selecting, views, permutations, concatenation;
- elementwise operators (the ``pointwise`` tag of aten, plus a few activations), with
  broadcasting: the union of the inputs' intervals;
- reductions over a spatial axis, and any operator not known here: the union of everything the
  inputs depend on (a superset, so never too small; the operator is named in the notes unless it
  reduces its input to a single position).

Because every rule is a union of intervals, the result is the bounding box of the exact set of
input pixels a unit depends on (the support of its input gradient when no path cancels): the
Minkowski sum of a box and a kernel is a box, and the bounding box of a union is the union of the
bounding boxes. Strided and dilated kernels leave holes inside that box; it is still its bounding
box.

Beside the exact intervals each axis carries the classic regular geometry where it exists (Araujo
et al. 2019, "Computing Receptive Fields of Convolutional Neural Networks", Distill): size ``r``,
stride ``j`` and offset ``o`` with unit ``i`` reading ``[o + i*j, o + i*j + r)`` before clipping;
composed as ``r' = r + (k-1)*d*j``, ``j' = j*s``, ``o' = o - p*j`` through a kernel, and as the
union of the boxes where branches of equal stride meet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = ["Axis", "Field", "FieldTracer"]

EMPTY_LO = 1 << 40  # an empty interval: lo > hi, neutral for min/max unions
EMPTY_HI = -(1 << 40)


@dataclass(frozen=True)
class Geometry:
    """Unit ``i`` reads ``[offset + i*stride, offset + i*stride + size)`` before clipping."""

    size: int
    stride: int
    offset: int


@dataclass
class Axis:
    """What a tensor's positions depend on along one input axis.

    ``dim`` is the tensor dimension that follows the axis (``lo``/``hi`` have its length), or None
    when every element depends on the one interval ``lo[0]:hi[0]``. ``geometry`` is the regular
    geometry if there is one, else None with ``why`` saying what broke it.
    """

    dim: int | None
    lo: torch.Tensor
    hi: torch.Tensor
    geometry: Geometry | None = None
    why: str = ""

    def hull(self) -> Axis:
        """The whole axis as one interval."""
        return Axis(None, self.lo.amin().view(1), self.hi.amax().view(1), None, self._why_hull())

    def _why_hull(self) -> str:
        return self.why or "every position depends on the same input interval (a global operation)"

    def moved(self, dim: int | None) -> Axis:
        return Axis(dim, self.lo, self.hi, self.geometry, self.why)


@dataclass
class Field:
    """The receptive field of a whole tensor: one :class:`Axis` per input axis (rows, columns)."""

    axes: tuple[Axis, Axis]
    notes: tuple[str, ...] = field(default_factory=tuple)

    def hull(self, note: str | None = None) -> Field:
        notes = self.notes + ((note,) if note else ())
        return Field(tuple(a.hull() for a in self.axes), notes)  # type: ignore[arg-type]


def _union_notes(fields: list[Field]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for f in fields:
        for n in f.notes:
            seen[n] = None
    return tuple(seen)


def _union_axes(axes: list[Axis], out_dim_size: dict[int, int], where: str) -> Axis:
    """The union of several inputs' axes, already moved to output dimensions."""
    dims = {a.dim for a in axes if a.dim is not None}
    if len(dims) > 1:  # the same input axis along two output dims: keep only the hull
        return Axis(
            None,
            torch.stack([a.lo.amin() for a in axes]).amin().view(1),
            torch.stack([a.hi.amax() for a in axes]).amax().view(1),
            None,
            f"{where} combines the input's axis along two different dimensions",
        )
    if not dims:
        lo = torch.stack([a.lo[0] for a in axes]).amin().view(1)
        hi = torch.stack([a.hi[0] for a in axes]).amax().view(1)
        return Axis(None, lo, hi, None, next((a.why for a in axes if a.why), ""))
    (d,) = dims
    n = out_dim_size[d]
    lo = torch.full((n,), EMPTY_LO, dtype=torch.long)
    hi = torch.full((n,), EMPTY_HI, dtype=torch.long)
    for a in axes:
        lo = torch.minimum(lo, a.lo.expand(n) if a.dim is None else a.lo)
        hi = torch.maximum(hi, a.hi.expand(n) if a.dim is None else a.hi)
    geo, why = _union_geometry(axes, where)
    return Axis(d, lo, hi, geo, why)


def _union_geometry(axes: list[Axis], where: str) -> tuple[Geometry | None, str]:
    if len(axes) == 1:
        return axes[0].geometry, axes[0].why
    for a in axes:
        if a.dim is None:
            return None, (
                f"{where} combines every position with a value that depends on "
                f"{'the whole input' if not a.why else 'a whole region'} (e.g. a pooled gate)"
            )
        if a.geometry is None:
            return None, a.why
    strides = {a.geometry.stride for a in axes}  # type: ignore[union-attr]
    if len(strides) > 1:
        return None, f"branches with strides {sorted(strides)} meet at {where}"
    starts = [a.geometry.offset for a in axes]  # type: ignore[union-attr]
    ends = [a.geometry.offset + a.geometry.size for a in axes]  # type: ignore[union-attr]
    return Geometry(max(ends) - min(starts), strides.pop(), min(starts)), ""


def _window(
    axis: Axis, n_out: int, k: int, s: int, p: int, d: int, n_in: int, where: str
) -> tuple[torch.Tensor, torch.Tensor, Geometry | None, str]:
    """Unit i reads rows i*s - p + t*d, t < k, that lie in [0, n_in)."""
    idx = torch.arange(n_out)[:, None] * s - p + torch.arange(k)[None, :] * d
    valid = (idx >= 0) & (idx < n_in)
    return _gather(axis, idx, valid, n_in) + _kernel_geometry(axis, k, s, p, d, where)


def _gather(
    axis: Axis, idx: torch.Tensor, valid: torch.Tensor, n_in: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Union over each row of ``idx`` (where ``valid``) of the input intervals it names."""
    if axis.dim is None:
        lo = axis.lo.expand(n_in)
        hi = axis.hi.expand(n_in)
    else:
        lo, hi = axis.lo, axis.hi
    safe = idx.clamp(0, max(n_in - 1, 0))
    lo = torch.where(valid, lo[safe], EMPTY_LO).amin(dim=1)
    hi = torch.where(valid, hi[safe], EMPTY_HI).amax(dim=1)
    return lo, hi


def _kernel_geometry(
    axis: Axis, k: int, s: int, p: int, d: int, where: str
) -> tuple[Geometry | None, str]:
    g = axis.geometry
    if g is None:
        return None, axis.why
    return Geometry(g.size + (k - 1) * d * g.stride, g.stride * s, g.offset - p * g.stride), ""


def _ints(v: Any, n: int, default: int | None = None) -> list[int]:
    if v is None or (isinstance(v, list | tuple) and len(v) == 0):
        if default is None:
            raise ValueError("missing parameter")
        return [default] * n
    if isinstance(v, int):
        return [v] * n
    v = [int(x) for x in v]
    return v * n if len(v) == 1 else v


def _name(func: Any) -> str:
    return func._schema.name.split("::")[-1].rstrip("_")


# Elementwise operators that aten does not tag ``pointwise`` (names without overload or "_").
_ELEMENTWISE = {
    "hardswish",
    "hardsigmoid",
    "gelu",
    "silu",
    "mish",
    "elu",
    "leaky_relu",
    "softplus",
    "_prelu_kernel",
    "prelu",
    "relu",
    "relu6",
    "hardtanh",
    "threshold",
    "_to_copy",
    "clone",
    "detach",
    "alias",
    "lift_fresh",
    "contiguous",
    "dropout",
    "native_dropout",
    "masked_fill",
    "_native_batch_norm_legit_no_training",
    "native_batch_norm",
    "_native_batch_norm_legit",
    "cudnn_batch_norm",
    "miopen_batch_norm",
    "batch_norm",
}
_VIEWS = {"view", "_unsafe_view", "reshape", "_reshape_alias"}
_NO_SPATIAL = {"empty", "zeros", "ones", "full", "scalar_tensor", "arange", "empty_like"}


class FieldTracer(TorchDispatchMode):
    """Propagate receptive fields through every aten operator run inside the mode.

    Call :meth:`start` with the input tensor first; :meth:`field` gives any later tensor's field
    (None when it does not depend on the input).
    """

    def __init__(self) -> None:
        super().__init__()
        # Fields by tensor id. Tensors are not kept alive (a large model's activations would all
        # stay in memory): a freed tensor's id may be reused, so every tensor an operator makes
        # either gets its field or loses any stale one.
        self._fields: dict[int, Field] = {}

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # The mode never runs under torch.compile; this spares the first call importing dynamo
        # (1.5-3 s), as the opt-out described in torch.utils._python_dispatch.
        return False

    def start(self, x: torch.Tensor) -> None:
        """Mark ``x`` (N, C, H, W) as the input: position i of dim 2 reads row i, of dim 3 col i."""
        h, w = x.shape[-2:]
        rows = Axis(2, torch.arange(h), torch.arange(h) + 1, Geometry(1, 1, 0))
        cols = Axis(3, torch.arange(w), torch.arange(w) + 1, Geometry(1, 1, 0))
        self._set(x, Field((rows, cols)))

    def field(self, t: torch.Tensor) -> Field | None:
        return self._fields.get(id(t))

    def clear(self) -> None:
        self._fields.clear()

    def _set(self, t: Any, f: Field) -> None:
        if isinstance(t, torch.Tensor):
            self._fields[id(t)] = f

    # -- dispatch ------------------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        flat, _ = tree_flatten((args, kwargs))
        ins = [t for t in flat if isinstance(t, torch.Tensor) and id(t) in self._fields]
        if not ins:
            for t in tree_flatten(out)[0]:  # a new tensor that does not depend on the input
                if isinstance(t, torch.Tensor):
                    self._fields.pop(id(t), None)
            return out
        fields = {id(t): self._fields[id(t)] for t in ins}
        for t in tree_flatten(out)[0]:  # outputs the rule leaves alone must not keep stale fields
            if isinstance(t, torch.Tensor):
                self._fields.pop(id(t), None)
        self._fields.update(fields)  # (an in-place operator returns its input)
        try:
            self._propagate(func, args, kwargs, ins, out)
        except Exception as e:  # a rule that does not fit: keep a superset, say so
            fields = [self._fields[id(t)] for t in ins]
            note = f"aten.{_name(func)} not followed exactly ({type(e).__name__}: {e})"
            self._assign_all(func, args, out, _hull_of(fields, note))
        return out

    def _assign_all(self, func: Any, args: Any, out: Any, f: Field) -> None:
        if func._schema.is_mutable and args and isinstance(args[0], torch.Tensor):
            self._set(args[0], f)
        for t in tree_flatten(out)[0]:
            self._set(t, f)

    def _propagate(self, func, args, kwargs, ins, out) -> None:  # noqa: C901 (one rule per op)
        name = _name(func)
        fields = [self._fields[id(t)] for t in ins]
        first = args[0] if args and isinstance(args[0], torch.Tensor) else None
        f0 = self._fields.get(id(first)) if first is not None else None
        outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        main = outs[0] if outs else None
        if main is None:
            return
        where = f"aten.{name}"

        if name == "copy":  # copy_(self, src) / copy(self, src): the result is src's values
            src = args[1]
            sf = self._fields.get(id(src))
            target = args[0] if func._schema.is_mutable else main
            if sf is not None:
                self._set(target, self._broadcast([(src, sf)], target, where))
            return
        if torch.Tag.pointwise in func.tags or name in _ELEMENTWISE:
            if name in ("native_batch_norm", "_native_batch_norm_legit", "cudnn_batch_norm") or (
                name in ("_native_batch_norm_legit_no_training", "miopen_batch_norm")
            ):
                pairs = [(first, f0)] if f0 is not None else []
            else:
                pairs = [(t, self._fields[id(t)]) for t in ins]
            if not pairs:
                return
            f = self._broadcast(pairs, main, where)
            if func._schema.is_mutable and first is not None:
                self._set(first, f)
            self._set(main, f)
            return
        if name in ("cat", "stack"):
            self._set(main, self._cat(name, args, kwargs, main, where))
            return
        if name in ("mm", "addmm", "bmm", "baddbmm"):
            self._set(main, self._matmul(name, args, main, where))
            return
        if f0 is None:  # the input flows in through a non-first argument: be safe
            self._assign_all(func, args, out, _hull_of(fields, f"{where} mixes its inputs"))
            return
        if name == "convolution":
            self._set(main, self._conv(args, f0, first, main, where))
        elif name in ("max_pool2d_with_indices", "max_pool2d", "max_pool1d", "max_pool3d") or (
            name in ("max_pool3d_with_indices", "max_pool1d_with_indices")
        ):
            k = 3 if "3d" in name else 1 if "1d" in name else 2
            ker = _ints(args[1], k)
            stride = _ints(args[2] if len(args) > 2 else None, k, 0)
            stride = ker if not any(stride) else stride
            pad = _ints(args[3] if len(args) > 3 else 0, k)
            dil = _ints(args[4] if len(args) > 4 else 1, k)
            f = self._windows(f0, first, main, ker, stride, pad, dil, where)
            for t in outs:
                self._set(t, f)
        elif name in ("avg_pool2d", "avg_pool1d", "avg_pool3d"):
            k = 3 if "3d" in name else 1 if "1d" in name else 2
            ker = _ints(args[1], k)
            stride = _ints(args[2] if len(args) > 2 else None, k, 0)
            stride = ker if not any(stride) else stride
            pad = _ints(args[3] if len(args) > 3 else 0, k)
            self._set(main, self._windows(f0, first, main, ker, stride, pad, [1] * k, where))
        elif name.startswith(("_adaptive_avg_pool", "adaptive_avg_pool", "adaptive_max_pool")):
            f = self._adaptive(f0, first, main, where)
            for t in outs:
                self._set(t, f)
        elif name in ("constant_pad_nd",) or name.startswith(("reflection_pad", "replication_pad")):
            self._set(main, self._pad(name, args, f0, first, main, where))
        elif name in _VIEWS:
            self._set(main, self._view(f0, first, main, where))
        elif name == "permute":
            self._set(main, self._permute(f0, list(args[1]), first.ndim))
        elif name in ("transpose", "t"):
            d0, d1 = (0, 1) if name == "t" else (args[1] % first.ndim, args[2] % first.ndim)
            perm = list(range(first.ndim))
            perm[d0], perm[d1] = perm[d1], perm[d0]
            self._set(main, self._permute(f0, perm, first.ndim))
        elif name == "unsqueeze":
            d = args[1] % (first.ndim + 1)
            self._set(main, _remap(f0, lambda a: a if a < d else a + 1))
        elif name == "squeeze":
            self._set(main, self._squeeze(args, f0, first, where))
        elif name == "expand":
            self._set(main, self._broadcast([(first, f0)], main, where))
        elif name == "slice":
            self._set(main, self._slice(args, f0, first, where))
        elif name == "select":
            d = args[1] % first.ndim
            idx = args[2] % first.shape[d]
            self._set(main, self._select(f0, d, idx))
        elif name in ("mean", "sum", "amax", "amin", "max", "min", "var", "std", "var_mean"):
            f = self._reduce(args, kwargs, f0, first, main, where)
            for t in outs:
                self._set(t, f)
        elif name == "native_layer_norm":
            n_norm = len(args[1])
            dims = set(range(first.ndim - n_norm, first.ndim))
            f = self._mix_dims(f0, dims, first.ndim, where)
            for t in outs[:1]:
                self._set(t, f)
        elif name.startswith(("upsample_nearest", "_upsample_nearest_exact", "upsample_bilinear")):
            self._set(main, self._upsample(name, args, f0, first, main, where))
        else:
            self._assign_all(func, args, out, self._unknown(fields, ins, outs, where))

    # -- rules ---------------------------------------------------------------------------------
    def _broadcast(self, pairs: list[tuple[torch.Tensor, Field]], out: torch.Tensor, where: str):
        per_axis: list[list[Axis]] = [[], []]
        for t, f in pairs:
            shift = out.ndim - t.ndim
            for k, a in enumerate(f.axes):
                if a.dim is not None and t.shape[a.dim] != out.shape[a.dim + shift]:
                    per_axis[k].append(Axis(None, a.lo[:1], a.hi[:1], None, a.why))
                else:
                    per_axis[k].append(a.moved(None if a.dim is None else a.dim + shift))
        sizes = dict(enumerate(out.shape))
        axes = tuple(_union_axes(p, sizes, where) for p in per_axis)
        return Field(axes, _union_notes([f for _, f in pairs]))  # type: ignore[arg-type]

    def _conv(self, args, f0: Field, x: torch.Tensor, out: torch.Tensor, where: str) -> Field:
        weight = args[1]
        k = weight.ndim - 2
        ker = list(weight.shape[2:])
        stride, pad, dil = _ints(args[3], k), _ints(args[4], k), _ints(args[5], k)
        transposed = bool(args[6])
        if not transposed:
            return self._windows(f0, x, out, ker, stride, pad, dil, where)
        axes = []
        for a in f0.axes:
            j = None if a.dim is None else a.dim - (x.ndim - k)
            if j is None or j < 0:
                axes.append(a)
                continue
            n_in, n_out = x.shape[a.dim], out.shape[a.dim]
            s, p, d = stride[j], pad[j], dil[j]
            # output o receives input r where o = r*s - p + t*d
            num = torch.arange(n_out)[:, None] + p - torch.arange(ker[j])[None, :] * d
            valid = (num % s == 0) & (num >= 0) & (num // s < n_in)
            lo, hi = _gather(a, num // s, valid, n_in)
            axes.append(Axis(a.dim, lo, hi, None, f"{where} is a transposed convolution"))
        return Field(tuple(axes), f0.notes)  # type: ignore[arg-type]

    def _windows(self, f0, x, out, ker, stride, pad, dil, where) -> Field:
        k = len(ker)
        axes = []
        for a in f0.axes:
            j = None if a.dim is None else a.dim - (x.ndim - k)
            if j is None or j < 0:  # the kernel does not slide along this axis
                axes.append(a)
                continue
            n_in, n_out = x.shape[a.dim], out.shape[a.dim]
            lo, hi, geo, why = _window(a, n_out, ker[j], stride[j], pad[j], dil[j], n_in, where)
            axes.append(Axis(a.dim, lo, hi, geo, why))
        return Field(tuple(axes), f0.notes)  # type: ignore[arg-type]

    def _adaptive(self, f0, x, out, where) -> Field:
        axes = []
        for a in f0.axes:
            if a.dim is None or a.dim < x.ndim - 2:
                axes.append(a)
                continue
            n_in, n_out = x.shape[a.dim], out.shape[a.dim]
            i = torch.arange(n_out)
            start = (i * n_in) // n_out
            end = -((-(i + 1) * n_in) // n_out)
            width = int((end - start).max())
            idx = start[:, None] + torch.arange(width)[None, :]
            valid = idx < end[:, None]
            lo, hi = _gather(a, idx, valid, n_in)
            if n_in % n_out == 0:
                kk = n_in // n_out
                geo, why = _kernel_geometry(a, kk, kk, 0, 1, where)
            else:
                geo, why = None, f"{where} pools {n_in} positions into {n_out} uneven bins"
            axes.append(Axis(a.dim, lo, hi, geo, why))
        return Field(tuple(axes), f0.notes)  # type: ignore[arg-type]

    def _pad(self, name, args, f0, x, out, where) -> Field:
        pads = list(args[1])
        axes = []
        for a in f0.axes:
            if a.dim is None:
                axes.append(a)
                continue
            j = x.ndim - 1 - a.dim  # pads are given from the last dimension backwards
            if 2 * j + 1 >= len(pads):
                axes.append(a)
                continue
            left = pads[2 * j]
            n_in, n_out = x.shape[a.dim], out.shape[a.dim]
            src = torch.arange(n_out) - left
            if name.startswith("reflection"):
                src = src.abs()
                src = torch.where(src >= n_in, 2 * (n_in - 1) - src, src)
                valid = torch.ones_like(src, dtype=torch.bool)
            elif name.startswith("replication"):
                src = src.clamp(0, n_in - 1)
                valid = torch.ones_like(src, dtype=torch.bool)
            else:
                valid = (src >= 0) & (src < n_in)
            lo, hi = _gather(a, src[:, None], valid[:, None], n_in)
            g = a.geometry
            geo = None if g is None else Geometry(g.size, g.stride, g.offset - left * g.stride)
            axes.append(Axis(a.dim, lo, hi, geo, a.why))
        return Field(tuple(axes), f0.notes)  # type: ignore[arg-type]

    def _view(self, f0: Field, x: torch.Tensor, out: torch.Tensor, where: str) -> Field:
        bound = [a.dim for a in f0.axes if a.dim is not None]
        if not bound:
            return f0
        first = min(bound)
        tail = list(x.shape[first:])
        if list(out.shape[out.ndim - len(tail) :]) == tail and out.ndim >= len(tail):
            shift = out.ndim - x.ndim
            return _remap(f0, lambda d: d + shift)
        last = max(bound)
        head = list(x.shape[: last + 1])
        if list(out.shape[: last + 1]) == head:
            return f0
        axes = []
        for a in f0.axes:
            if a.dim is None:
                axes.append(a)
                continue
            found = _relocate(a, x.shape, out.shape)
            if found is None:
                return f0.hull(
                    f"{where} mixes the spatial dimensions {tuple(x.shape)} -> "
                    f"{tuple(out.shape)}; followed as a global operation"
                )
            axes.append(found)
        return Field(tuple(axes), f0.notes)  # type: ignore[arg-type]

    def _matmul(self, name, args, out, where) -> Field:
        """(b)mm / (b)addmm: row i of the product reads row i of the left factor and all of it
        along the contracted dimension; column j reads column j of the right factor."""
        left, right = (args[1], args[2]) if name.startswith(("addmm", "baddbmm")) else args[:2]
        n = out.ndim
        pairs = []
        for t, contracted in ((left, n - 1), (right, n - 2)):
            f = self._fields.get(id(t))
            if f is None:
                continue
            axes = tuple(a.hull() if a.dim == contracted else a for a in f.axes)
            pairs.append((_Shape(list(out.shape)), Field(axes, f.notes)))  # type: ignore[arg-type]
        if name.startswith(("addmm", "baddbmm")) and id(args[0]) in self._fields:
            pairs.append((args[0], self._fields[id(args[0])]))
        return self._broadcast(pairs, out, where)

    def _permute(self, f0: Field, perm: list[int], ndim: int) -> Field:
        perm = [p % ndim for p in perm]
        return _remap(f0, lambda d: perm.index(d))

    def _squeeze(self, args, f0, x, where) -> Field:
        if len(args) > 1:
            dims = args[1] if isinstance(args[1], list | tuple) else [args[1]]
            dims = {d % x.ndim for d in dims if x.shape[d % x.ndim] == 1}
        else:
            dims = {d for d in range(x.ndim) if x.shape[d] == 1}
        axes = []
        for a in f0.axes:
            if a.dim is None:
                axes.append(a)
            elif a.dim in dims:
                axes.append(a.hull())
            else:
                axes.append(a.moved(a.dim - sum(1 for d in dims if d < a.dim)))
        return Field(tuple(axes), f0.notes)  # type: ignore[arg-type]

    def _slice(self, args, f0, x, where) -> Field:
        d = (args[1] if len(args) > 1 else 0) % x.ndim
        start = args[2] if len(args) > 2 else None
        end = args[3] if len(args) > 3 else None
        step = args[4] if len(args) > 4 else 1
        n = x.shape[d]
        start = None if start is None else max(min(start, n), -n) if start < 0 else min(start, n)
        end = None if end is None else max(min(end, n), -n) if end < 0 else min(end, n)
        lo_i, hi_i, st = slice(start, end, step).indices(n)
        axes = []
        for a in f0.axes:
            if a.dim != d:
                axes.append(a)
                continue
            g = a.geometry
            geo = None if g is None else Geometry(g.size, g.stride * st, g.offset + lo_i * g.stride)
            axes.append(Axis(d, a.lo[lo_i:hi_i:st], a.hi[lo_i:hi_i:st], geo, a.why))
        return Field(tuple(axes), f0.notes)  # type: ignore[arg-type]

    def _select(self, f0, d, idx) -> Field:
        axes = []
        for a in f0.axes:
            if a.dim == d:
                axes.append(Axis(None, a.lo[idx : idx + 1], a.hi[idx : idx + 1], None, a.why))
            elif a.dim is not None and a.dim > d:
                axes.append(a.moved(a.dim - 1))
            else:
                axes.append(a)
        return Field(tuple(axes), f0.notes)  # type: ignore[arg-type]

    def _cat(self, name, args, kwargs, out, where) -> Field:
        tensors = list(args[0])
        d = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        d %= out.ndim
        parts = [(t, self._fields.get(id(t))) for t in tensors]
        if name == "stack":
            shift_f = [(t, _remap(f, lambda a: a if a < d else a + 1)) for t, f in parts if f]
            fake = [t.unsqueeze(d) for t, f in parts if f]
            return self._broadcast([(v, f) for v, (_, f) in zip(fake, shift_f)], out, where)
        known = [(t, f) for t, f in parts if f is not None]
        along = any(a.dim == d for _, f in known for a in f.axes)
        if not along:
            pairs = []
            for t, f in known:  # the others' sizes along d differ: view them at out's size
                shape = list(t.shape)
                shape[d] = out.shape[d]
                pairs.append((_Shape(shape), f))
            return self._broadcast(pairs, out, where)  # type: ignore[arg-type]
        axes = []
        for k in range(2):
            los, his = [], []
            for t, f in parts:
                n = t.shape[d]
                if f is None:
                    los.append(torch.full((n,), EMPTY_LO))
                    his.append(torch.full((n,), EMPTY_HI))
                    continue
                a = f.axes[k]
                if a.dim == d:
                    los.append(a.lo)
                    his.append(a.hi)
                else:
                    los.append(a.lo.amin().expand(n))
                    his.append(a.hi.amax().expand(n))
            if all(f is not None and f.axes[k].dim == d for _, f in parts):
                axes.append(Axis(d, torch.cat(los), torch.cat(his), None, f"{where} tiles maps"))
            else:
                hull = Axis(None, torch.cat(los).amin().view(1), torch.cat(his).amax().view(1))
                axes.append(hull)
        return Field(tuple(axes), _union_notes([f for _, f in known]))  # type: ignore[arg-type]

    def _reduce(self, args, kwargs, f0, x, out, where) -> Field:
        dims = args[1] if len(args) > 1 else kwargs.get("dim")
        if dims is None or (isinstance(dims, list | tuple) and len(dims) == 0):
            return f0.hull()
        if isinstance(dims, int):
            dims = [dims]
        dims = {int(d) % x.ndim for d in dims}
        keep = out.ndim == x.ndim
        f = self._mix_dims(f0, dims, x.ndim, where)
        if keep:
            return f
        return _remap(f, lambda d: d - sum(1 for r in dims if r < d))

    def _mix_dims(self, f0: Field, dims: set[int], ndim: int, where: str) -> Field:
        axes = []
        for a in f0.axes:
            axes.append(a.hull() if a.dim is not None and a.dim in dims else a)
        return Field(tuple(axes), f0.notes)  # type: ignore[arg-type]

    def _upsample(self, name, args, f0, x, out, where) -> Field:
        axes = []
        for a in f0.axes:
            if a.dim is None or a.dim < x.ndim - 2:
                axes.append(a)
                continue
            j = a.dim - (x.ndim - 2)
            n_in, n_out = x.shape[a.dim], out.shape[a.dim]
            scale = _upsample_scale(name, args, j)
            o = torch.arange(n_out, dtype=torch.float32)
            if name.startswith("upsample_bilinear"):
                align = bool(args[2])
                if align:
                    ratio = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
                    src = o * ratio
                else:
                    ratio = 1.0 / scale if scale else n_in / n_out
                    src = ((o + 0.5) * ratio - 0.5).clamp(min=0)
                i0 = src.floor().long().clamp(max=n_in - 1)
                i1 = torch.where((src - i0) > 0, (i0 + 1).clamp(max=n_in - 1), i0)
                idx = torch.stack([i0, i1], dim=1)
            else:
                ratio = 1.0 / scale if scale else n_in / n_out
                shift = 0.5 if "exact" in name else 0.0
                idx = ((o + shift) * ratio).floor().long().clamp(max=n_in - 1)[:, None]
            lo, hi = _gather(a, idx, torch.ones_like(idx, dtype=torch.bool), n_in)
            axes.append(Axis(a.dim, lo, hi, None, f"{where} resamples the map"))
        return Field(tuple(axes), f0.notes)  # type: ignore[arg-type]

    def _unknown(self, fields, ins, outs, where) -> Field:
        spatial = any(
            a.dim is not None and t.shape[a.dim] > 1 for t, f in zip(ins, fields) for a in f.axes
        )
        reduced = all(t.numel() <= t.shape[0] * (t.shape[1] if t.ndim > 1 else 1) for t in outs)
        note = None if (not spatial or reduced) else f"{where} is not known: followed as global"
        return _hull_of(fields, note)


class _Shape:
    """A stand-in with only a shape (for broadcasting rules)."""

    def __init__(self, shape: list[int]) -> None:
        self.shape = torch.Size(shape)
        self.ndim = len(shape)


def _relocate(a: Axis, in_shape: torch.Size, out_shape: torch.Size) -> Axis | None:
    """The axis after a reshape that moves its dimension: the per-element intervals laid out in
    the new shape must vary along one dimension only (else None)."""
    d = a.dim
    assert d is not None
    view = [1] * len(in_shape)
    view[d] = in_shape[d]
    lo = a.lo.view(view).expand(in_shape).reshape(out_shape)
    hi = a.hi.view(view).expand(in_shape).reshape(out_shape)
    if bool((lo == lo.flatten()[0]).all()) and bool((hi == hi.flatten()[0]).all()):
        return Axis(None, lo.flatten()[:1], hi.flatten()[:1], None, a.why or "reshaped")
    for k in range(len(out_shape)):
        index = [0] * len(out_shape)
        index[k] = slice(None)
        line_lo, line_hi = lo[tuple(index)], hi[tuple(index)]
        view = [1] * len(out_shape)
        view[k] = out_shape[k]
        if bool((lo == line_lo.view(view)).all()) and bool((hi == line_hi.view(view)).all()):
            return Axis(k, line_lo.clone(), line_hi.clone(), a.geometry, a.why)
    return None


def _upsample_scale(name: str, args: Any, j: int) -> float | None:
    if name.endswith("vec") or (len(args) > 2 and isinstance(args[-1], list | tuple)):
        sf = args[-1]
        if isinstance(sf, list | tuple) and sf:
            return float(sf[j])
        return None
    rest = args[3:] if name.startswith("upsample_bilinear") else args[2:]
    vals = [v for v in rest if v is None or isinstance(v, float)]
    if len(vals) >= 2 and vals[j] is not None:
        return float(vals[j])
    return None


def _remap(f: Field, fn) -> Field:
    return Field(
        tuple(a.moved(None if a.dim is None else fn(a.dim)) for a in f.axes),  # type: ignore[arg-type]
        f.notes,
    )


def _hull_of(fields: list[Field], note: str | None) -> Field:
    axes = []
    for k in range(2):
        lo = torch.stack([f.axes[k].lo.amin() for f in fields]).amin().view(1)
        hi = torch.stack([f.axes[k].hi.amax() for f in fields]).amax().view(1)
        why = note or "a global operation mixes every position"
        axes.append(Axis(None, lo, hi, None, why))
    notes = _union_notes(fields) + ((note,) if note else ())
    return Field(tuple(axes), notes)  # type: ignore[arg-type]
