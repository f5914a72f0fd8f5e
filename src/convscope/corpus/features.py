"""Pooled features of a whole corpus at one layer, computed in one streaming pass and cached.

``features(model, corpus, layer, pool="avg")`` gives, for every corpus image ``n``, the layer's
output pooled over space: ``f[n, c] = mean_{i,j} a[n, c, i, j]`` (``pool="max"``: the maximum; a
2-D (N, C) layer is taken as it is). It is the feature space of the neighbours figure (the last
hidden layer, lecture 002) and of embedding maps (Karpathy's cnnembed).

The cache is keyed by the model's weights, the layer, the corpus fingerprint, the pooling and the
dtype: ``<cache>/<key>.npy`` is an (N, C) ``.npy`` array opened memory-mapped (float32, or float16
with ``dtype="float16"``: half the disk and page cache), rows of undecodable images are NaN;
``<key>.top1.npy`` holds the model's top-1 class per image (-1 where none) when its output is
(N, classes); ``<key>.json`` the metadata, written last (a cache without it is incomplete). The
pass is resumable (checkpoints beside the cache; rows already written stay in the file) and
distributed like mining: under torch.distributed every rank writes its own batches' rows into the
same file (which must then be on a file system every rank sees).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convscope.corpus.sources import Batch, Corpus
from convscope.corpus.sources import open as open_corpus
from convscope.corpus.stream import (
    model_fingerprint,
    rank_and_world,
    remove_checkpoint,
    stream,
)
from convscope.errors import ConvscopeError, LayerError

__all__ = ["Features", "default_cache_dir", "features", "pool_activation"]

POOLS = ("avg", "max")
DTYPES = {"float32": np.float32, "float16": np.float16}


def default_cache_dir() -> Path:
    """``$CONVSCOPE_CACHE`` or ``~/.cache/convscope``, plus ``/features``."""
    root = os.environ.get("CONVSCOPE_CACHE") or Path.home() / ".cache" / "convscope"
    return Path(root) / "features"


def pool_activation(a: torch.Tensor, pool: str = "avg") -> torch.Tensor:
    """(N, C, H, W) -> (N, C) by the spatial mean (``"avg"``) or maximum (``"max"``); (N, C)
    as it is."""
    if a.ndim == 2:
        return a
    if a.ndim != 4:
        raise LayerError(
            f"a layer output of shape {tuple(a.shape)} cannot be pooled into features; "
            "use a 4-D feature map or an (N, C) layer"
        )
    return a.mean(dim=(2, 3)) if pool == "avg" else a.amax(dim=(2, 3))


@dataclass
class Features:
    """Pooled features of a corpus: ``array`` (N, C) memory-mapped (NaN rows for undecodable
    images), ``valid`` (N,) bool, ``top1`` (N,) int model predictions or None, ``meta``."""

    array: np.ndarray
    valid: np.ndarray
    top1: np.ndarray | None
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __len__(self) -> int:
        return self.array.shape[0]

    @property
    def indices(self) -> np.ndarray:
        """Global corpus indices of the valid rows."""
        return np.flatnonzero(self.valid)

    def tensor(self, valid_only: bool = True) -> torch.Tensor:
        """The features as a float32 tensor (a copy), by default only the valid rows."""
        a = self.array[self.valid] if valid_only else self.array
        return torch.from_numpy(np.asarray(a, dtype=np.float32))

    def __repr__(self) -> str:
        return (
            f"<Features {self.array.shape[0]} x {self.array.shape[1]} {self.array.dtype} of "
            f"{self.meta.get('layer')} ({int(self.valid.sum())} valid) at {self.path}>"
        )


class _FeatureWriter:
    """Writes each batch's pooled rows (and top-1 classes) into the memory-mapped files."""

    def __init__(self, array: np.ndarray, top1: np.ndarray | None, pool: str) -> None:
        self.array, self.top1, self.pool = array, top1, pool

    def update(self, batch: Batch, acts: list[torch.Tensor], output: Any) -> None:
        rows = pool_activation(acts[0], self.pool).float().cpu().numpy()
        idx = batch.indices.numpy()
        self.array[idx] = rows.astype(self.array.dtype)
        if self.top1 is not None and isinstance(output, torch.Tensor) and output.ndim == 2:
            self.top1[idx] = output.argmax(dim=1).cpu().numpy()

    def state_dict(self) -> dict[str, Any]:
        self.flush()
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def gather(self) -> None:
        self.flush()

    def flush(self) -> None:
        for a in (self.array, self.top1):
            if isinstance(a, np.memmap):
                a.flush()


def _probe(bundle: Any, corpus: Corpus, layer: str) -> tuple[tuple[int, ...], Any]:
    """The layer's output shape and the model's output shape on the first decodable image."""
    from convscope.core.guard import preserved
    from convscope.core.recorder import Recorder
    from convscope.corpus.sources import batches

    for i in range(min(len(corpus), 64)):
        b = next(batches(corpus, bundle, [i], 1))
        if b.x is None:
            continue
        with (
            preserved(bundle.model),
            torch.inference_mode(),
            Recorder(bundle.model, [layer]) as rec,
        ):
            out = bundle.model(b.x)
            a = rec.activation(layer)
        return tuple(a.shape), tuple(out.shape) if isinstance(out, torch.Tensor) else None
    raise ConvscopeError(f"none of the first 64 images of {corpus.name} can be decoded")


def features(
    model: Any,
    corpus: Any,
    layer: str,
    *,
    pool: str = "avg",
    dtype: str = "float32",
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    checkpoint_every: int = 50,
    progress: bool = False,
) -> Features:
    """Pooled features of every corpus image at ``layer``, from the cache when there.

    Args:
        model: a model name, ``nn.Module`` or bundle.
        corpus: anything :func:`convscope.corpus.open` takes.
        layer: a 4-D layer (pooled) or an (N, C) one (taken as it is).
        pool: ``"avg"`` (spatial mean) or ``"max"``.
        dtype: ``"float32"`` or ``"float16"`` on disk.
        cache_dir: the cache folder (default :func:`default_cache_dir`).
        batch_size, num_workers, checkpoint_every, progress: as for :func:`convscope.top_units`;
            an interrupted pass resumes from its checkpoint on the next call.
    """
    import convscope
    from convscope.core.layers import resolve_layer

    if pool not in POOLS:
        raise ConvscopeError(f"unknown pool {pool!r}; use one of {', '.join(POOLS)}")
    if dtype not in DTYPES:
        raise ConvscopeError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    bundle = convscope.load_model(model)
    corpus = open_corpus(corpus)
    spec = resolve_layer(bundle.model, layer).spec
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    mfp = model_fingerprint(bundle.model)
    key_fields = {
        "model": mfp,
        "layer": spec,
        "corpus": corpus.fingerprint(),
        "pool": pool,
        "dtype": dtype,
        "preprocess": repr(bundle.preprocess),
    }
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:20]
    base = cache / key
    meta_path, array_path, top1_path = (
        base.with_suffix(".json"),
        base.with_suffix(".npy"),
        Path(f"{base}.top1.npy"),
    )
    if meta_path.exists():
        return _open_cached(meta_path, array_path, top1_path)

    rank, world = rank_and_world()
    layer_shape, out_shape = _probe(bundle, corpus, spec)
    if len(layer_shape) not in (2, 4):
        pool_activation(torch.empty(layer_shape))  # raises the LayerError
    n, c = len(corpus), layer_shape[1]
    with_top1 = out_shape is not None and len(out_shape) == 2
    checkpoint = base.parent / f"features-{key}-checkpoint-rank{rank}.pt"
    resuming = checkpoint.exists() and array_path.exists()
    if not resuming:
        checkpoint.unlink(missing_ok=True)  # its rows would be missing from a new file
    if rank == 0 and not resuming:
        cache.mkdir(parents=True, exist_ok=True)
        arr = np.lib.format.open_memmap(array_path, mode="w+", dtype=DTYPES[dtype], shape=(n, c))
        arr[:] = np.nan
        arr.flush()
        if with_top1:
            t1 = np.lib.format.open_memmap(top1_path, mode="w+", dtype=np.int32, shape=(n,))
            t1[:] = -1
            t1.flush()
        del arr
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    array = np.load(array_path, mmap_mode="r+")
    top1 = np.load(top1_path, mmap_mode="r+") if with_top1 else None
    writer = _FeatureWriter(array, top1, pool)
    info = stream(
        bundle,
        corpus,
        [spec],
        [writer],
        key={"pool": pool, "dtype": dtype},
        job=f"features-{key}",
        batch_size=batch_size,
        num_workers=num_workers,
        checkpoint_dir=cache,
        checkpoint_every=checkpoint_every,
        resume=True,
        progress=progress,
        desc=f"features {spec}",
    )
    writer.flush()
    if info["images"] == 0:
        raise ConvscopeError(f"no image of the corpus {corpus.name} could be decoded")
    meta = {
        "format": "convscope-features/1",
        "key": key,
        **key_fields,
        "model_name": bundle.name,
        "corpus_info": corpus.describe(),
        "shape": [n, c],
        "images": info["images"],
        "skipped": [[int(i), str(r)] for i, r in info["skipped"]],
        "top1": with_top1,
        "resumed_at_batch": info["resumed_at"],
        "layer_shape": list(layer_shape[1:]),
    }
    if rank == 0:  # every rank's rows are in the file (stream gathered after the pass)
        from convscope.fileio import write_all

        write_all(cache, {meta_path.name: json.dumps(meta, indent=1).encode()})
    if world > 1:  # the others read the metadata only once it is written
        import torch.distributed as dist

        dist.barrier()
    remove_checkpoint(info)
    del array, top1, writer
    return _open_cached(meta_path, array_path, top1_path)


def _open_cached(meta_path: Path, array_path: Path, top1_path: Path) -> Features:
    meta = json.loads(meta_path.read_text())
    array = np.load(array_path, mmap_mode="r")
    top1 = np.load(top1_path, mmap_mode="r") if meta.get("top1") else None
    valid = np.ones(array.shape[0], dtype=bool)
    for i, _ in meta["skipped"]:
        valid[i] = False
    return Features(array, valid, top1, meta, array_path)
