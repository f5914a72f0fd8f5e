"""Feature maps layer by layer: what each channel of a layer computes on an image.

``activations(model, images, layers)`` records the raw (N, C, h, w) output of each layer in one
batched forward pass through the :class:`~convscope.core.recorder.Recorder` (a reused module is
named per call, ``"_swish@1"``). Looking at them layer by layer is the "information distillation
pipeline" of the lecture notes (000, 001): early activations are large but few, later ones smaller,
more numerous and sparser; and a 256 x 13 x 13 layer shown as 256 small images (002, after
Yosinski et al. 2015, Understanding Neural Networks Through Deep Visualization).

The default layers are the pipeline's stages (:func:`pipeline_layers`): the stem, then the last
block-level output at each spatial resolution, to the head.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image
from torch import nn

from convscope.core.guard import preserved
from convscope.core.layers import LayerRef, resolve_layer
from convscope.core.recorder import Recorder
from convscope.errors import ConvscopeError, LayerError
from convscope.inside.tracing import Call, trace_calls

__all__ = ["Activations", "activations", "pipeline_layers"]

SORTS = ("mean", "max", None)


@dataclass
class Activations:
    """Raw activations of some layers on some images.

    Attributes:
        maps: layer name -> (N, C, h, w) tensor, detached, on the model's device.
        layers: the layer names in the order given (for ``"pipeline"``: forward order).
        pixels: (N, H, W, 3) uint8, the images as the model saw them (None for a tensor input
            that cannot be inverted).
        labels: a label per image.
        output: the model's output on the images.
    """

    maps: dict[str, torch.Tensor]
    layers: list[str]
    pixels: torch.Tensor | None
    labels: list[str]
    output: Any = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, layer: str) -> torch.Tensor:
        return self.maps[self._layer(layer)]

    def _layer(self, layer: str | None) -> str:
        if layer is None:
            return self.layers[-1]
        if layer not in self.maps:
            from convscope.errors import did_you_mean

            raise LayerError(
                f"layer {layer!r} was not recorded{did_you_mean(layer, self.layers)}; "
                f"recorded: {', '.join(self.layers)}"
            )
        return layer

    def _image(self, image: int | str) -> int:
        n = len(self.labels)
        if isinstance(image, str):
            if image not in self.labels:
                raise ConvscopeError(
                    f"no image labelled {image!r}; images: {', '.join(self.labels)}"
                )
            return self.labels.index(image)
        if not isinstance(image, int) or not -n <= image < n:
            raise ConvscopeError(f"image {image!r} out of range: {n} image(s)")
        return image % n

    def channel_order(
        self, image: int | str, layer: str, sort: str | None = "mean", top: int | None = None
    ) -> list[int]:
        """The channels of ``layer`` on ``image``: strongest first by their map's ``"mean"`` or
        ``"max"`` (ties by channel number), or in channel order (``None``); the first ``top``."""
        if sort not in SORTS:
            raise ConvscopeError(f"sort is 'mean', 'max' or None, not {sort!r}")
        maps = self[layer][self._image(image)].float()
        c = maps.shape[0]
        if sort is None:
            order = list(range(c))
        else:
            flat = maps.reshape(c, -1)
            key = flat.mean(dim=1) if sort == "mean" else flat.amax(dim=1)
            # stable: equal values keep channel order
            order = torch.sort(-key.cpu(), stable=True).indices.tolist()
        if top is not None:
            if top < 1:
                raise ConvscopeError(f"top must be at least 1, not {top}")
            order = order[:top]
        return order

    def grid(
        self,
        image: int | str = 0,
        layer: str | None = None,
        channels: Sequence[int] | None = None,
        sort: str | None = "mean",
        *,
        top: int | None = None,
        scale: str = "layer",
        cmap: str | None = None,
        cell: int | None = None,
        cols: int | None = None,
    ) -> Image.Image:
        """Every channel's map of ``layer`` (default the last recorded) on ``image``, as a grid,
        with the input beside it. ``channels`` picks some (drawn in the given order); otherwise
        all, sorted by ``sort`` and cut to ``top``. Colours follow :mod:`convscope.viz.activations`:
        one scale per layer and image (``scale="layer"``) or per channel (``"channel"``)."""
        from convscope.viz.activations import feature_grid

        name = self._layer(layer)
        i = self._image(image)
        maps = self.maps[name][i]
        if channels is None:
            chosen = self.channel_order(i, name, sort, top)
        else:
            chosen = [int(c) for c in channels]
            bad = [c for c in chosen if not 0 <= c < maps.shape[0]]
            if bad or not chosen:
                raise LayerError(
                    f"channel(s) {bad or '[]'} out of range: layer {name} has {maps.shape[0]} "
                    f"(0-{maps.shape[0] - 1})"
                )
        c, h, w = maps.shape
        how = f"sorted by {sort}" if channels is None and sort else "in channel order"
        title = (
            f"{self.labels[i]}: {name}, {c} x {h} x {w}; {len(chosen)} channel(s)"
            + (f" {how}" if channels is None else "")
            + f"; scale per {scale}"
        )
        return feature_grid(
            maps,
            chosen,
            pixels=None if self.pixels is None else self.pixels[i],
            title=title,
            scale=scale,
            cmap=cmap,
            cell=cell,
            cols=cols,
        )

    def auto_top(self, layer: str) -> int | None:
        """How many channels a picture of ``layer`` shows by default: all of at most 64, else
        the 16 strongest."""
        return None if self[layer].shape[1] <= 64 else 16

    def strip(
        self, image: int | str = 0, *, sort: str | None = "mean", side: int | None = None
    ) -> Image.Image:
        """The whole pipeline on one image: a block per recorded layer (forward order for
        ``"pipeline"``), each filled with as many of its channels (strongest first by ``sort``)
        as fit at the layer's real resolution (:func:`convscope.viz.activations.pipeline_strip`)."""
        from convscope.viz.activations import pipeline_strip

        i = self._image(image)
        stages = []
        for name in self.layers:
            order = self.channel_order(i, name, sort)
            stages.append((name, self.maps[name][i][order]))
        pixels = None if self.pixels is None else self.pixels[i]
        return pipeline_strip(pixels, stages, side=side)

    def save(
        self,
        folder: str | os.PathLike,
        *,
        top: int | str | None = "auto",
        sort: str | None = "mean",
        scale: str = "layer",
        strip: bool = True,
    ) -> list[str]:
        """Write a grid per image and layer (``<label>_<layer>.png``) and, with ``strip``, a
        pipeline strip per image (``<label>_pipeline.png``), all or nothing; returns the paths.
        ``top="auto"``: every channel of a layer with at most 64, else the 16 strongest by
        ``sort``."""
        from convscope.fileio import write_all
        from convscope.viz.render import png_bytes

        files = {}
        for i, label in enumerate(self.labels):
            for name in self.layers:
                k = self.auto_top(name) if top == "auto" else top
                img = self.grid(i, name, sort=sort, top=k, scale=scale)
                files[f"{label}_{_safe(name)}.png"] = png_bytes(img)
            if strip:
                files[f"{label}_pipeline.png"] = png_bytes(self.strip(i, sort=sort))
        return [str(p) for p in write_all(folder, files)]


def _safe(name: str) -> str:
    return name.replace("/", "_").replace("@", "-at")


def _block_level(call: Call, containers: set[str]) -> bool:
    """A top-level module, or a child of a top-level container (a block of a ModuleList or a
    Sequential): the level at which a network's stages are usually written."""
    if "." not in call.name:
        return True
    parent, _, _ = call.name.rpartition(".")
    return parent in containers


def _containers(model: nn.Module) -> set[str]:
    return {n for n, m in model.named_children() if isinstance(m, nn.ModuleList | nn.Sequential)}


def _stages(maps: list[Call]) -> list[Call]:
    """From map calls in forward order: the last with the first one's shape (the stem), then the
    last at each spatial resolution, in forward order."""
    stem = [c for c in maps if c.shape == maps[0].shape][-1]
    last_at: dict[tuple[int, int], Call] = {}
    for c in maps:
        last_at[(c.shape[2], c.shape[3])] = c
    chosen = {id(stem): stem, **{id(c): c for c in last_at.values()}}
    order = {id(c): k for k, c in enumerate(maps)}
    return sorted(chosen.values(), key=lambda c: order[id(c)])


def pipeline_layers(model: nn.Module, example: torch.Tensor) -> list[str]:
    """The stages of the network from the stem to the head, found by tracing ``example``:

    among the block-level calls with a 4-D output of more than one position (top-level modules
    and the children of top-level containers, such as ``_blocks.3`` or ``layer2``), the last one
    with the stem's output shape (the stem), then the last one at each spatial resolution, in
    forward order. A model with fewer than two block-level maps uses every module call.
    (:func:`activations` finds the same stages during its own pass, without this trace.)"""
    calls = trace_calls(model, example)
    containers = _containers(model)
    maps = [c for c in calls if c.is_map and _block_level(c, containers)]
    if len(maps) < 2:
        maps = [c for c in calls if c.is_map]
    if not maps:
        raise LayerError("the model has no layer with a 4-D (N, C, h, w) output")
    return [c.spec for c in _stages(maps)]


def activations(
    model: Any,
    images: Any,
    layers: str | Sequence[str] | None = "pipeline",
    *,
    batch_size: int | None = None,
    progress: bool = False,
) -> Activations:
    """Record the raw activations of ``layers`` on ``images``.

    Args:
        model: a bundle, a registered name or any ``nn.Module`` (:func:`convscope.load_model`).
        images: paths, ``"sample:NAME"``, PIL images, arrays, or a preprocessed tensor.
        layers: layer names (``"_blocks.4"``, ``"_swish@1"``); ``"pipeline"`` (default): the
            stages from stem to head (:func:`pipeline_layers`). Each must output a 4-D map.
        batch_size: images per forward pass (default all at once).
        progress: a progress bar over the batches.

    Returns:
        :class:`Activations`: ``.maps[layer]`` is (N, C, h, w); ``.grid()``, ``.strip()``,
        ``.save()`` draw them.
    """
    from convscope.data.inputs import prepare_inputs
    from convscope.models import load_model

    bundle = load_model(model)
    net = bundle.model
    if batch_size is not None and batch_size < 1:
        raise ConvscopeError(f"batch_size must be at least 1, not {batch_size}")
    x, pixels, labels = prepare_inputs(bundle, images)
    if layers is None or (isinstance(layers, str) and layers == "pipeline"):
        found = _record_pipeline(net, x, batch_size=batch_size, progress=progress)
        if found is not None:
            specs, maps, outputs = found
            return Activations(
                maps=dict(zip(specs, maps)),
                layers=specs,
                pixels=pixels,
                labels=labels,
                output=outputs,
            )
        names = pipeline_layers(net, x[:1])  # fewer than two block-level maps: trace them all
    else:
        names = [layers] if isinstance(layers, str) else list(layers)
        if not names:
            raise LayerError("no layers given")
    refs = [resolve_layer(net, n) for n in names]
    specs = [r.spec for r in refs]
    maps, outputs = record(net, x, refs, batch_size=batch_size, progress=progress)
    return Activations(
        maps=dict(zip(specs, maps)),
        layers=specs,
        pixels=pixels,
        labels=labels,
        output=outputs,
    )


def record(
    net: nn.Module,
    x: torch.Tensor,
    refs: Sequence[LayerRef],
    *,
    batch_size: int | None = None,
    progress: bool = False,
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """The (N, C, h, w) outputs of ``refs`` on ``x``, batch by batch, and the model's output."""
    n = x.shape[0]
    step = batch_size or n
    starts = range(0, n, step)
    if progress and len(starts) > 1:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="activations", unit="batch")
    parts: list[list[torch.Tensor]] = [[] for _ in refs]
    outs = []
    with preserved(net), torch.no_grad(), Recorder(net, list(refs)) as rec:
        for s in starts:
            rec.clear()
            out = net(x[s : s + step])
            outs.append(out if isinstance(out, torch.Tensor) else None)
            for k, ref in enumerate(refs):
                a = rec.activation(ref)
                if a.ndim != 4:
                    raise LayerError(
                        f"layer {ref.spec!r} outputs shape {tuple(a.shape)}, not a 4-D "
                        "(N, C, h, w) feature map"
                    )
                parts[k].append(a.detach())
    maps = [p[0] if len(p) == 1 else torch.cat(p) for p in parts]
    output = None if any(o is None for o in outs) else torch.cat(outs)
    return maps, output


def _record_pipeline(
    net: nn.Module, x: torch.Tensor, *, batch_size: int | None, progress: bool
) -> tuple[list[str], list[torch.Tensor], torch.Tensor | None] | None:
    """Record every block-level module, pick the stages (:func:`pipeline_layers`) from what the
    first batch recorded, keep only theirs. None when the model has fewer than two block-level
    maps (the caller then traces every module)."""
    containers = _containers(net)
    cands = [
        LayerRef(n, m, None)
        for n, m in net.named_modules()
        if n and ("." not in n or n.rpartition(".")[0] in containers)
    ]
    if not cands:
        return None
    n = x.shape[0]
    step = batch_size or n
    starts = range(0, n, step)
    if progress and len(starts) > 1:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="activations", unit="batch")
    stages: list[Call] | None = None
    parts: list[list[torch.Tensor]] = []
    outs = []
    modules = dict(net.named_modules())
    with preserved(net), torch.no_grad(), Recorder(net, cands) as rec:
        for s in starts:
            rec.clear()
            out = net(x[s : s + step])
            outs.append(out if isinstance(out, torch.Tensor) else None)
            if stages is None:
                calls = []
                for name, k in rec.order:
                    value = rec.calls[name][k]
                    many = len(rec.calls[name]) > 1
                    shape = tuple(value.shape) if isinstance(value, torch.Tensor) else None
                    spec = f"{name}@{k}" if many else name
                    calls.append(Call(spec, name, k if many else None, modules[name], shape))
                maps = [c for c in calls if c.is_map]
                if len(maps) < 2:
                    return None
                stages = _stages(maps)
                parts = [[] for _ in stages]
            for i, c in enumerate(stages):
                parts[i].append(rec.calls[c.name][c.call or 0].detach())
    assert stages is not None
    maps_out = [p[0] if len(p) == 1 else torch.cat(p) for p in parts]
    output = None if any(o is None for o in outs) else torch.cat(outs)
    return [c.spec for c in stages], maps_out, output
