"""Per-layer statistics: how large, how many and how sparse the activations are, layer by layer.

The lecture notes (000, 001) describe a CNN as an "information distillation pipeline": early
activations are large but not as numerous, later ones smaller, more numerous and increasingly
sparse. :func:`layer_stats` measures it on a model and images. For each layer's output ``a`` of
shape (N, C, h, w), over all N images:

- ``count``: activations per image, ``C * h * w``;
- ``mean`` and ``max`` of ``a``;
- ``zero``: the fraction of activations exactly 0 (the sparsity a rectifier creates);
- ``nonpositive``: the fraction ``<= 0``; for a layer with negative values (not rectified: a
  convolution, a BatchNorm, a linear bottleneck) this, not ``zero``, says how much a following
  rectifier would silence; ``rectified`` says whether the layer had no negative value;
- ``dead``: the fraction of channels never active (never ``> 0``) on these images;
- ``active_per_position``: the mean number of channels ``> 0`` at a position, over images and
  positions: ``#{a > 0} / (N * h * w)``.

Everything is computed in one batched forward pass per batch, inside the recorder's hook
(:class:`~convscope.core.recorder.Recorder` with ``reduce``): nothing is cloned or kept, so any
number of images streams through in constant memory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from PIL import Image
from torch import nn

from convscope.core.guard import preserved
from convscope.core.layers import resolve_layer
from convscope.core.recorder import Recorder
from convscope.errors import ConvscopeError, LayerError
from convscope.inside.tracing import Call, trace_calls

__all__ = ["LayerStat", "LayerStats", "layer_stats", "stat_layers"]

COLUMNS = (
    "layer",
    "type",
    "shape",
    "count",
    "mean",
    "max",
    "zero",
    "nonpositive",
    "rectified",
    "dead",
    "active_per_position",
)

# Modules that only move values around (padding, identity, dropout in eval mode): not layers
# whose statistics say anything about the network.
_PASSIVE = (
    nn.Identity,
    nn.modules.padding._ConstantPadNd,
    nn.modules.padding._ReflectionPadNd,
    nn.modules.padding._ReplicationPadNd,
    nn.ZeroPad2d,
    nn.modules.dropout._DropoutNd,
)


def _passive(module: nn.Module) -> bool:
    # some packages define their own Identity (EfficientNet-Lite's static padding)
    return isinstance(module, _PASSIVE) or type(module).__name__ == "Identity"


@dataclass(frozen=True)
class LayerStat:
    """One layer's row (see the module docstring for each field)."""

    layer: str
    type: str
    shape: tuple[int, int, int]
    count: int
    mean: float
    max: float
    zero: float
    nonpositive: float
    rectified: bool
    dead: float
    active_per_position: float
    channels: int
    images: int


class _Accumulator:
    """Sums over batches for one layer: computed in the hook, a few scalars and a (C,) max.

    Counts are the expensive part on a CPU: torch's ``count_nonzero(a > 0)`` runs several times
    slower than a sum of the same tensor there, numpy's comparison and count (vectorized, on the
    same memory, no copy) about as fast as the sum; so CPU tensors are counted through numpy. The
    sum and the maximum stay in torch, which runs them on all its threads: numpy's (one thread)
    cost the same CPU time and were faster only on an oversubscribed machine
    (benchmarks/README.md). On other devices everything stays in torch and the totals are read
    once, at the end (no synchronization per layer).
    """

    __slots__ = ("shape", "total", "zeros", "positives", "nonzeros", "numel", "chan_max", "n")

    def __init__(self) -> None:
        self.shape: tuple[int, int, int] | None = None
        self.total: Any = 0.0
        self.positives: Any = 0
        self.nonzeros: Any = 0
        self.numel = 0
        self.chan_max: torch.Tensor | None = None
        self.n = 0

    def add(self, a: torch.Tensor) -> None:
        shape = tuple(a.shape[1:])
        if self.shape is not None and shape != self.shape:
            raise LayerError(
                f"a layer's output shape changed between batches: {self.shape} -> {shape}"
            )
        self.shape = shape  # type: ignore[assignment]
        if a.device.type == "cpu" and a.dtype == torch.float32 and a.is_contiguous():
            import numpy as np

            v = a.numpy()
            self.positives += int(np.count_nonzero(v > 0))
            self.nonzeros += int(np.count_nonzero(v != 0))
        else:
            self.positives = self.positives + torch.count_nonzero(a > 0)
            self.nonzeros = self.nonzeros + torch.count_nonzero(a)
        self.total = self.total + a.sum(dtype=torch.float32).double()
        # the per-channel maximum: reduce the contiguous h*w first, then the batch
        chan_max = a.flatten(2).amax(dim=2).amax(dim=0).float()
        self.chan_max = (
            chan_max if self.chan_max is None else torch.maximum(self.chan_max, chan_max)
        )
        self.numel += a.numel()
        self.n += a.shape[0]

    def row(self, name: str, kind: str) -> LayerStat:
        assert self.shape is not None and self.chan_max is not None
        c, h, w = self.shape
        positives, nonzeros = int(self.positives), int(self.nonzeros)
        return LayerStat(
            layer=name,
            type=kind,
            shape=(c, h, w),
            count=c * h * w,
            mean=float(self.total) / self.numel,
            max=float(self.chan_max.max()),
            zero=(self.numel - nonzeros) / self.numel,
            nonpositive=(self.numel - positives) / self.numel,
            rectified=nonzeros == positives,
            dead=float((self.chan_max <= 0).float().mean()),
            active_per_position=positives / (self.n * h * w),
            channels=c,
            images=self.n,
        )


@dataclass
class LayerStats:
    """The rows of :func:`layer_stats`, in forward order."""

    rows: list[LayerStat]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, layer: str | int) -> LayerStat:
        if isinstance(layer, int):
            return self.rows[layer]
        for r in self.rows:
            if r.layer == layer:
                return r
        raise LayerError(f"no statistics for layer {layer!r}")

    def records(self) -> list[dict[str, Any]]:
        """One dict per layer, the table's columns (shape as ``"CxHxW"``)."""
        out = []
        for r in self.rows:
            d = asdict(r)
            d["shape"] = "x".join(str(v) for v in r.shape)
            out.append({k: d[k] for k in (*COLUMNS, "channels", "images")})
        return out

    def table(self) -> str:
        """A fixed-width text table (what ``convscope stats`` prints)."""
        head = (
            "layer", "type", "shape", "count", "mean", "max", "zero", "<=0", "rect", "dead",
            "active/pos",
        )  # fmt: skip
        lines = [
            (
                r.layer,
                r.type,
                "x".join(str(v) for v in r.shape),
                f"{r.count:,}",
                f"{r.mean:.3g}",
                f"{r.max:.3g}",
                f"{r.zero:.1%}",
                f"{r.nonpositive:.1%}",
                "yes" if r.rectified else "no",
                f"{r.dead:.1%}",
                f"{r.active_per_position:.1f}",
            )
            for r in self.rows
        ]
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
        right = {3, 4, 5, 6, 7, 9, 10}

        def fmt(cells: Sequence[str]) -> str:
            return "  ".join(
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths))
            ).rstrip()

        n = self.rows[0].images if self.rows else 0
        rule = "-" * len(fmt(head))
        notes = (
            f"{len(self.rows)} layers, {n} image(s). zero: fraction exactly 0; <=0: fraction <= 0 "
            "(the sparsity a rectifier would make; rect: no negative value); dead: channels never "
            "> 0; active/pos: mean channels > 0 per position."
        )
        return "\n".join([fmt(head), rule, *(fmt(line) for line in lines), "", notes])

    def to_csv(self) -> str:
        import csv
        import io

        buf = io.StringIO()
        records = self.records()
        writer = csv.DictWriter(buf, fieldnames=list(records[0]) if records else list(COLUMNS))
        writer.writeheader()
        writer.writerows(records)
        return buf.getvalue()

    def to_json(self) -> str:
        return json.dumps(self.records(), indent=1)

    def chart(self, title: str | None = None) -> Image.Image:
        """Activations per image (log scale, left axis) and sparsity (right axis) across depth
        (:func:`convscope.viz.stats.depth_chart`)."""
        from convscope.viz.stats import depth_chart

        return depth_chart(self.rows, title=title)

    def save(self, folder: str | os.PathLike, *, title: str | None = None) -> list[str]:
        """Write ``stats.csv``, ``stats.json`` and ``stats.png`` under ``folder``, all or nothing."""
        from convscope.fileio import write_all
        from convscope.viz.render import png_bytes

        files = {
            "stats.csv": self.to_csv().encode(),
            "stats.json": self.to_json().encode(),
            "stats.png": png_bytes(self.chart(title)),
        }
        return [str(p) for p in write_all(folder, files)]


def _eligible(model: nn.Module, which: str) -> dict[str, nn.Module]:
    """The modules whose 4-D outputs :func:`layer_stats` measures by default (see
    :func:`stat_layers`), by name."""
    modules = {n: m for n, m in model.named_modules() if n}
    if which == "all":
        return {
            n: m
            for n, m in modules.items()
            if (
                next(iter(m.children()), None) is None
                or any(True for _ in m.parameters(recurse=False))
            )
            and not _passive(m)
        }
    if which == "blocks":
        containers = {
            n for n, m in model.named_children() if isinstance(m, nn.ModuleList | nn.Sequential)
        }
        return {
            n: m for n, m in modules.items() if "." not in n or n.rpartition(".")[0] in containers
        }
    raise ConvscopeError(f"layers is 'all', 'blocks' or a list of names, not {which!r}")


def stat_layers(model: nn.Module, example: torch.Tensor, which: str = "all") -> list[Call]:
    """The layers :func:`layer_stats` measures by default, in forward order, from a trace of
    ``example``: ``"all"``: every call of a module with a 4-D output that is a leaf or holds
    parameters of its own (convolutions, normalizations, activations, pooling), except modules
    that only pass values on (identity, padding, dropout); ``"blocks"``: the block-level calls
    with a 4-D output (top-level modules and the children of top-level containers, such as
    ``_blocks.3`` or ``layer2``). (:func:`layer_stats` finds the same layers during its own
    pass, without this trace.)"""
    eligible = _eligible(model, which)
    return [
        c
        for c in trace_calls(model, example)
        if c.name in eligible
        and isinstance(c.shape, tuple)
        and len(c.shape) == 4
        and all(isinstance(v, int) for v in c.shape)
    ]


def layer_stats(
    model: Any,
    images: Any,
    layers: str | Sequence[str] = "all",
    *,
    batch_size: int = 8,
    progress: bool = False,
) -> LayerStats:
    """Statistics of every 4-D layer (or of ``layers``) over ``images``.

    Args:
        model: a bundle, a registered name or any ``nn.Module`` (:func:`convscope.load_model`).
        images: paths, ``"sample:NAME"``, PIL images, arrays, or a preprocessed tensor.
        layers: ``"all"`` (default) or ``"blocks"`` (:func:`stat_layers`), or a list of names
            (each must output a 4-D map).
        batch_size: images per forward pass; statistics accumulate over batches, nothing else is
            kept.
        progress: a progress bar over the batches.

    Returns:
        :class:`LayerStats`: ``.rows``, ``.table()``, ``.to_csv()``, ``.to_json()``,
        ``.chart()``, ``.save(folder)``.
    """
    from convscope.core.layers import LayerRef
    from convscope.data.inputs import prepare_inputs
    from convscope.models import load_model

    bundle = load_model(model)
    net = bundle.model
    if batch_size < 1:
        raise ConvscopeError(f"batch_size must be at least 1, not {batch_size}")
    x, _, _ = prepare_inputs(bundle, images, pixels=False)
    named: list[LayerRef] | None = None
    if isinstance(layers, str) and layers in ("all", "blocks"):
        # every eligible module is watched; the 4-D calls among them are the layers
        watched = [LayerRef(n, m, None) for n, m in _eligible(net, layers).items()]
    else:
        names = [layers] if isinstance(layers, str) else list(layers)
        if not names:
            raise LayerError("no layers given")
        named = [resolve_layer(net, n) for n in names]
        watched = named
    wanted = {(r.name, r.call) for r in named} if named is not None else None
    acc: dict[tuple[str, int], _Accumulator] = {}
    shapes: dict[tuple[str, int], Any] = {}

    def reduce(name: str, k: int, out: Any) -> None:
        if wanted is not None and (name, k) not in wanted and (name, None) not in wanted:
            return None
        key = (name, k)
        if isinstance(out, torch.Tensor) and out.ndim == 4:
            if key not in acc:
                acc[key] = _Accumulator()
            acc[key].add(out.detach())
        elif key not in shapes:
            shapes[key] = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        return None

    n = x.shape[0]
    runs: dict[str, int] = {}
    with preserved(net), torch.no_grad(), Recorder(net, watched, reduce=reduce) as rec:
        bar = None
        for b, s in enumerate(range(0, n, batch_size)):
            rec.clear()
            net(x[s : s + batch_size])
            if b == 0:  # the layers are known after one batch: check them before going on
                runs = {name: len(calls) for name, calls in rec.calls.items()}
                if named is not None:
                    _check_named(named, runs, shapes)
                if progress and n > batch_size:
                    from tqdm.auto import tqdm

                    bar = tqdm(
                        total=-(-n // batch_size), initial=1, desc="layer stats", unit="batch"
                    )
            elif bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
    modules = dict(net.named_modules())
    if named is not None:
        keys = [(r.name, r.call or 0) for r in named]
        specs = [r.spec for r in named]
    else:
        keys = list(acc)  # in the order the calls first finished: forward order
        specs = [name if runs.get(name, 1) == 1 else f"{name}@{k}" for name, k in keys]
        if not keys:
            raise LayerError("the model has no layer with a 4-D (N, C, h, w) output")
    return LayerStats(
        [acc[key].row(spec, type(modules[key[0]]).__name__) for key, spec in zip(keys, specs)]
    )


def _check_named(
    named: Sequence[Any], runs: dict[str, int], shapes: dict[tuple[str, int], Any]
) -> None:
    """Each named layer ran (once, or is named per call) and output a 4-D map."""
    for ref in named:
        count = runs.get(ref.name, 0)
        if count == 0 or (ref.call is not None and ref.call >= count):
            raise LayerError(f"layer {ref.spec!r} does not run in the forward pass")
        if ref.call is None and count > 1:
            options = ", ".join(f"{ref.name}@{i}" for i in range(count))
            raise LayerError(
                f"layer {ref.name!r} runs {count} times in one forward pass; name one call: "
                f"{options}"
            )
        shape = shapes.get((ref.name, ref.call or 0))
        if shape is not None:
            raise LayerError(
                f"layer {ref.spec!r} outputs shape {shape}, not a 4-D (N, C, h, w) map"
            )
