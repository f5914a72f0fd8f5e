"""Top-k mining: for every channel of a layer, the k corpus images that excite it most, where,
and the patch of each image its neuron sees (Zeiler & Fergus 2014, "Visualizing and Understanding
Convolutional Networks", Fig. 2; Springenberg et al. 2015, Fig. 3).

One streaming pass (:mod:`convscope.corpus.stream`): forward only, batched, O(channels x k) memory
whatever the corpus size, resumable from checkpoints, and distributed under torchrun (each rank
mines its batches, the partial lists merge exactly). The order is the total order of
:mod:`convscope.corpus.topk` (score descending, then global image index), so the answer is unique
and bit-identical however the work was split.

On disk (:meth:`TopUnits.save`): ``topk.safetensors`` holds, per layer ``L``, the tensors
``L/values`` (C, k) float32, ``L/image_indices`` (C, k) int64, ``L/positions`` (C, k, 2) int64
(row, column in the layer's map) and, when receptive fields are known, ``L/boxes`` (C, k, 4)
int64 (top, left, bottom, right, half-open, in input pixels); ``topk.json`` holds the metadata
(``format: "convscope-topk/1"``, the model's name and fingerprint, the layers with their shapes,
the corpus's name, kind, size and fingerprint, k, reduce, the input size, images decoded, the
skipped images with reasons). :func:`load_top_units` reads both back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from convscope.corpus.sources import Batch, Corpus
from convscope.corpus.sources import open as open_corpus
from convscope.corpus.stream import log, remove_checkpoint, stream
from convscope.corpus.topk import REDUCTIONS, TopK
from convscope.errors import ConvscopeError, LayerError

__all__ = ["FORMAT", "LayerTopK", "TopUnits", "load_top_units", "top_units"]

FORMAT = "convscope-topk/1"


@dataclass
class LayerTopK:
    """The top k of every channel of one layer, best first.

    ``values`` (C, k) scores, ``image_indices`` (C, k) global corpus indices, ``positions``
    (C, k, 2) row and column of the maximum in the layer's (H, W) map, ``boxes`` (C, k, 4) the
    receptive field of that position in input pixels (top, left, bottom, right; half-open) or None
    when the layer's receptive field is not known.
    """

    layer: str
    values: torch.Tensor
    image_indices: torch.Tensor
    positions: torch.Tensor
    boxes: torch.Tensor | None
    shape: tuple[int, int, int]  # C, H, W of the layer's map

    @property
    def k(self) -> int:
        return self.values.shape[1]

    def unit(self, channel: int) -> str:
        """The unit name ``LAYER:K`` of a channel (see :mod:`convscope.core.units`)."""
        from convscope.core.units import Unit

        return Unit(self.layer, int(channel)).spec

    def neuron(self, channel: int, rank: int) -> str:
        """The neuron ``LAYER:K:I:J`` of the ``rank``-th hit of ``channel`` (for guided backprop
        of that unit at that position)."""
        from convscope.core.units import Unit

        i, j = (int(v) for v in self.positions[channel, rank])
        return Unit(self.layer, int(channel), (i, j)).spec


@dataclass
class TopUnits:
    """What :func:`top_units` returns: one :class:`LayerTopK` per layer and the job's metadata.

    With a single layer, ``values``, ``image_indices``, ``positions`` and ``boxes`` are that
    layer's; ``result["layer"]`` picks one of several.
    """

    layers: dict[str, LayerTopK]
    meta: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, layer: str) -> LayerTopK:
        if layer not in self.layers:
            raise LayerError(f"no top-k for layer {layer!r}; this result has {list(self.layers)}")
        return self.layers[layer]

    def _only(self) -> LayerTopK:
        if len(self.layers) != 1:
            raise LayerError(
                f"this result has {len(self.layers)} layers ({', '.join(self.layers)}); "
                "pick one with result[layer]"
            )
        return next(iter(self.layers.values()))

    @property
    def values(self) -> torch.Tensor:
        return self._only().values

    @property
    def image_indices(self) -> torch.Tensor:
        return self._only().image_indices

    @property
    def positions(self) -> torch.Tensor:
        return self._only().positions

    @property
    def boxes(self) -> torch.Tensor | None:
        return self._only().boxes

    @property
    def skipped(self) -> list[tuple[int, str]]:
        return [tuple(s) for s in self.meta.get("skipped", [])]

    def save(self, folder: str | os.PathLike) -> list[Path]:
        """Write ``topk.safetensors`` and ``topk.json`` under ``folder`` (all or nothing)."""
        from safetensors.torch import save as save_tensors

        from convscope.fileio import write_all

        tensors: dict[str, torch.Tensor] = {}
        for name, lt in self.layers.items():
            tensors[f"{name}/values"] = lt.values.contiguous()
            tensors[f"{name}/image_indices"] = lt.image_indices.contiguous()
            tensors[f"{name}/positions"] = lt.positions.contiguous()
            if lt.boxes is not None:
                tensors[f"{name}/boxes"] = lt.boxes.contiguous()
        meta = dict(self.meta)
        meta["layers"] = {name: {"shape": list(lt.shape)} for name, lt in self.layers.items()}
        files = {
            "topk.safetensors": save_tensors(tensors, metadata={"format": FORMAT}),
            "topk.json": (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode(),
        }
        return write_all(folder, files)

    def __repr__(self) -> str:
        layers = ", ".join(f"{n} {tuple(lt.values.shape)}" for n, lt in self.layers.items())
        return f"<TopUnits k={self.meta.get('k')} over {self.meta.get('images')} images: {layers}>"


def load_top_units(folder: str | os.PathLike) -> TopUnits:
    """Read a result written by :meth:`TopUnits.save` (or ``convscope mine --out``)."""
    from safetensors.torch import load_file

    root = Path(folder)
    try:
        meta = json.loads((root / "topk.json").read_text())
        tensors = load_file(root / "topk.safetensors")
    except (OSError, ValueError) as e:
        raise ConvscopeError(f"{root} holds no readable top-k result: {e}") from None
    if meta.get("format") != FORMAT:
        raise ConvscopeError(f"{root}/topk.json is not a {FORMAT} file")
    layers = {}
    for name, info in meta.pop("layers").items():
        layers[name] = LayerTopK(
            layer=name,
            values=tensors[f"{name}/values"],
            image_indices=tensors[f"{name}/image_indices"],
            positions=tensors[f"{name}/positions"],
            boxes=tensors.get(f"{name}/boxes"),
            shape=tuple(info["shape"]),
        )
    return TopUnits(layers, meta)


class _TopKConsumer:
    """Feeds each layer's activations into its :class:`TopK`."""

    def __init__(self, k: int, reduce: str, layer_names: Sequence[str]) -> None:
        self.k, self.reduce, self.names = k, reduce, list(layer_names)
        self.tops: list[TopK | None] = [None] * len(self.names)
        self.shapes: list[tuple[int, int, int] | None] = [None] * len(self.names)

    def _ensure(self, i: int, a: torch.Tensor) -> TopK:
        if a.ndim != 4:
            raise LayerError(
                f"layer {self.names[i]!r} outputs shape {tuple(a.shape)}, not a 4-D (N, C, H, W) "
                "feature map; top-k mining needs channels with a spatial map"
            )
        if self.tops[i] is None:
            self.tops[i] = TopK(a.shape[1], self.k, a.shape[3], self.reduce)
            self.shapes[i] = tuple(int(s) for s in a.shape[1:])
        return self.tops[i]

    def update(self, batch: Batch, acts: list[torch.Tensor], output: Any) -> None:
        for i, a in enumerate(acts):
            self._ensure(i, a).update(a, batch.indices)

    def state_dict(self) -> dict[str, Any]:
        return {
            "tops": [None if t is None else t.state_dict() for t in self.tops],
            "shapes": self.shapes,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for i, (s, shape) in enumerate(zip(state["tops"], state["shapes"])):
            if s is None:
                continue
            c, _, w = shape
            self.tops[i] = TopK(c, self.k, w, self.reduce)
            self.tops[i].load_state_dict(s)
            self.shapes[i] = tuple(shape)

    def gather(self) -> None:
        import torch.distributed as dist

        world = dist.get_world_size()
        # A rank that saw no image has no state yet: agree on the shapes first.
        shapes: list[Any] = [None] * world
        dist.all_gather_object(shapes, self.shapes)
        for i in range(len(self.names)):
            shape = next((s[i] for s in shapes if s[i] is not None), None)
            if shape is None:
                continue
            if self.tops[i] is None:
                self.tops[i] = TopK(shape[0], self.k, shape[2], self.reduce)
                self.shapes[i] = tuple(shape)
            top = self.tops[i]
            keys = ("values", "indices", "where")
            gathered = {key: _all_gather(getattr(top, key)) for key in keys}
            merged = TopK(top.channels, self.k, top.width, self.reduce)
            for r in range(world):
                part = TopK(top.channels, self.k, top.width, self.reduce)
                part.load_state_dict({key: gathered[key][r] for key in keys})
                merged.merge(part)
            self.tops[i] = merged


def _all_gather(t: torch.Tensor) -> list[torch.Tensor]:
    import torch.distributed as dist

    device = (
        torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    )
    t = t.to(device).contiguous()
    out = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t)
    return [o.cpu() for o in out]


def top_units(
    model: Any,
    corpus: Any,
    layer: str | Sequence[str],
    *,
    k: int = 9,
    reduce: str = "max",
    batch_size: int = 32,
    num_workers: int = 0,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 50,
    resume: bool = False,
    progress: bool = False,
) -> TopUnits:
    """The top ``k`` images of every channel of ``layer`` (one name or several) over ``corpus``.

    Args:
        model: a model name, ``nn.Module`` or bundle (:func:`convscope.load_model`).
        corpus: anything :func:`convscope.corpus.open` takes (a folder, paths, a Dataset,
            ``"samples-crops"``) or a Corpus.
        layer: a 4-D layer (``"_blocks.10"``, ``"_swish@1"``) or a list of them.
        k: images per channel. When fewer than ``k`` images decode, each channel lists all of
            them (``k`` becomes that number; ``meta["k_requested"]`` keeps what was asked).
        reduce: ``"max"`` (the channel's spatial maximum, Zeiler & Fergus) or ``"mean"``; the
            position is the spatial argmax either way.
        batch_size: images per forward pass (part of the checkpoint's key: batches are fixed).
        num_workers: DataLoader worker processes decoding images (0: in this process).
        checkpoint_dir: where to write checkpoints every ``checkpoint_every`` batches; with
            ``resume=True`` a checkpoint found there is continued (one with another key is
            refused), else a checkpoint there is an error. Removed once the result exists.
        progress: a progress bar (images/s and ETA).

    Under torch.distributed (an initialized process group, e.g. inside ``torchrun``) each rank
    mines its share of the batches and every rank returns the merged, identical result.

    Returns a :class:`TopUnits`. Images that cannot be decoded are skipped, logged (logger
    ``convscope.corpus``) and listed in ``meta["skipped"]``; if none decodes, ConvscopeError.
    """
    import convscope

    if reduce not in REDUCTIONS:
        raise ConvscopeError(f"unknown reduce {reduce!r}; use one of {', '.join(REDUCTIONS)}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConvscopeError(f"k must be an integer >= 1, not {k!r}")
    bundle = convscope.load_model(model)
    corpus = open_corpus(corpus)
    names = [layer] if isinstance(layer, str) else list(layer)
    if not names:
        raise LayerError("top_units needs at least one layer")
    from convscope.core.layers import resolve_layer

    specs = [resolve_layer(bundle.model, n).spec for n in names]
    consumer = _TopKConsumer(k, reduce, specs)
    info = stream(
        bundle,
        corpus,
        specs,
        [consumer],
        key={"k": k, "reduce": reduce},
        job="mine",
        batch_size=batch_size,
        num_workers=num_workers,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        resume=resume,
        progress=progress,
        desc="mine " + ",".join(specs),
    )
    result = _result(bundle, corpus, consumer, info, k, reduce)
    remove_checkpoint(info)
    return result


def _result(bundle, corpus: Corpus, consumer: _TopKConsumer, info, k: int, reduce: str) -> TopUnits:
    if info["images"] == 0:
        n_skip = len(info["skipped"])
        raise ConvscopeError(
            f"no image of the corpus {corpus.name} could be decoded ({n_skip} skipped"
            + (
                f", e.g. {corpus.label(info['skipped'][0][0])}: {info['skipped'][0][1]}"
                if n_skip
                else ""
            )
            + ")"
        )
    layers = {}
    for name, top, shape in zip(consumer.names, consumer.tops, consumer.shapes):
        filled = top.filled()
        positions = top.positions()[:, :filled]
        boxes = _boxes(bundle.model, name, positions, info["input_size"])
        layers[name] = LayerTopK(
            layer=name,
            values=top.values[:, :filled].float().cpu(),
            image_indices=top.indices[:, :filled].cpu(),
            positions=positions,
            boxes=boxes,
            shape=shape,
        )
    if info["skipped"]:
        log.warning(
            "%d corpus image(s) could not be decoded and were skipped", len(info["skipped"])
        )
    meta = {
        "format": FORMAT,
        "model": {"name": bundle.name, "fingerprint": info["key"]["model"]},
        "corpus": corpus.describe(),
        "k": min(k, info["images"]),
        "k_requested": k,
        "reduce": reduce,
        "input_size": list(info["input_size"]),
        "images": info["images"],
        "skipped": [[int(i), str(reason)] for i, reason in info["skipped"]],
        "skipped_labels": [corpus.label(i) for i, _ in info["skipped"]],
        "resumed_at_batch": info["resumed_at"],
        "batch_size": info["key"]["batch_size"],
        "processes": info["key"]["world"],
    }
    return TopUnits(layers, meta)


def _boxes(model, layer: str, positions: torch.Tensor, input_size) -> torch.Tensor | None:
    """The receptive-field box of each position, from :func:`convscope.receptive_field` (the
    "Inside the network" capability); None until that capability is available."""
    from convscope.corpus.patches import boxes_of

    return boxes_of(model, layer, positions, tuple(input_size))
