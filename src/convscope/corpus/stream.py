"""One streaming pass of a model over a corpus: the engine under mining and feature caches.

The corpus is cut into fixed batches by global index (batch ``b`` holds indices
``b*B .. (b+1)*B - 1``). Under torch.distributed, rank ``r`` of ``W`` takes the batches with
``b % W == r``, so every rank sees exactly the batches one process would, with the same images in
each (the activations are then the same floats: a batch's composition can change a kernel's
results in the last bit). Each batch runs forward only (``torch.inference_mode``), through the one
:class:`~convscope.core.recorder.Recorder`, and is handed to *consumers* (top-k lists, a feature
file, predictions) that keep O(their size) state.

Checkpoints: every ``checkpoint_every`` batches each rank writes its consumers' state, its position
and the images it skipped to ``<dir>/<job>-checkpoint-rank<r>.pt``, atomically (a temporary file,
fsync, rename), so a run killed at any instant (SIGKILL included) restarts from the last complete
checkpoint and, as the batches are the same, ends with a bit-identical result. A checkpoint is
keyed by the model's weights, the layers, the corpus fingerprint, the batch size, the options and
the number of processes; a checkpoint with another key is refused, never silently reused.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from convscope.core.guard import preserved
from convscope.core.layers import LayerRef, resolve_layer
from convscope.core.outputs import select
from convscope.core.recorder import Recorder
from convscope.corpus.sources import Batch, Corpus, batches
from convscope.errors import ConvscopeError

__all__ = ["CheckpointError", "Consumer", "model_fingerprint", "rank_and_world", "stream"]

log = logging.getLogger("convscope.corpus")

CHECKPOINT_FORMAT = 1


class CheckpointError(ConvscopeError):
    """A checkpoint is stale (another model, layer, corpus or options), unreadable, or in the
    way of a run that was not asked to resume."""


class Consumer(Protocol):
    """What a streaming pass feeds. ``update`` gets the batch, the recorded activation of each
    layer (in the order given to :func:`stream`) and the model's output."""

    def update(self, batch: Batch, acts: list[torch.Tensor], output: Any) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def gather(self) -> None:
        """Under torch.distributed: combine every rank's state (called on every rank)."""


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the world size (0, 1 without an initialized process group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def model_fingerprint(model: torch.nn.Module) -> str:
    """A 16-hex-digit hash of a model's class and every parameter and buffer (names, dtypes,
    shapes, bytes): what checkpoints and caches are keyed by."""
    h = hashlib.sha256(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def stream(
    bundle: Any,
    corpus: Corpus,
    layers: Sequence[str | LayerRef],
    consumers: Sequence[Consumer],
    *,
    key: dict[str, Any],
    job: str,
    batch_size: int = 32,
    num_workers: int = 0,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 50,
    resume: bool = False,
    progress: bool = False,
    desc: str = "",
) -> dict[str, Any]:
    """Run the model over the corpus once, feeding ``consumers``; return what happened:
    ``{"images": decoded images, "skipped": [(index, reason), ...], "resumed_at": batch position
    this rank resumed at (0 for a fresh run), "input_size": (H, W), "seconds": s}``.

    ``key`` is what identifies the job beyond the model, corpus, layers and batch size (its
    options); a checkpoint with another key is refused (:class:`CheckpointError`).
    """
    if batch_size < 1:
        raise ConvscopeError(f"batch_size must be at least 1, not {batch_size}")
    if checkpoint_every < 1:
        raise ConvscopeError(f"checkpoint_every must be at least 1, not {checkpoint_every}")
    model = bundle.model
    selector = getattr(bundle, "output", None)
    refs = [resolve_layer(model, layer) for layer in layers]
    rank, world = rank_and_world()
    n = len(corpus)
    n_batches = (n + batch_size - 1) // batch_size
    mine = list(range(rank, n_batches, world))
    full_key = {
        "job": job,
        "model": model_fingerprint(model),
        "layers": [r.spec for r in refs],
        "corpus": corpus.fingerprint(),
        "batch_size": batch_size,
        "world": world,
        **key,
    }

    ckpt = None
    start, skipped, seen, input_size = 0, [], 0, None
    if checkpoint_dir is not None:
        ckpt = Path(checkpoint_dir) / f"{job}-checkpoint-rank{rank}.pt"
        _remove_temporaries(ckpt)
        if ckpt.exists():
            if not resume:
                raise CheckpointError(
                    f"{ckpt} holds an unfinished run; resume it (resume=True, --resume) or delete it"
                )
            state = _read_checkpoint(ckpt, full_key)
            for c, s in zip(consumers, state["consumers"]):
                c.load_state_dict(s)
            start, skipped, seen = state["next"], list(state["skipped"]), state["seen"]
            input_size = state.get("input_size")
            log.info("%s: rank %d resumes at batch %d of %d", job, rank, start, len(mine))

    todo = mine[start:]
    done_images = sum(min(n, (b + 1) * batch_size) - b * batch_size for b in mine[:start])
    total_images = done_images + sum(min(n, (b + 1) * batch_size) - b * batch_size for b in todo)
    bar = _bar(progress and rank == 0, total_images, done_images, desc or job, world)
    t0 = time.perf_counter()
    try:
        with preserved(model), torch.inference_mode(), Recorder(model, refs) as rec:
            for pos, batch in enumerate(
                batches(corpus, bundle, todo, batch_size, num_workers=num_workers), start=start
            ):
                for index, reason in batch.skipped:
                    log.warning(
                        "skipped corpus image %d (%s): %s", index, corpus.label(index), reason
                    )
                skipped.extend(batch.skipped)
                if batch.x is not None:
                    rec.clear()
                    out = select(model(batch.x), selector)  # the logits part, if named
                    acts = [rec.activation(r) for r in refs]
                    input_size = tuple(int(s) for s in batch.x.shape[-2:])
                    for c in consumers:
                        c.update(batch, acts, out)
                    seen += len(batch.indices)
                    del out, acts
                if bar is not None:
                    bar.update(len(batch.indices) + len(batch.skipped))
                if (
                    ckpt is not None
                    and (pos + 1 - start) % checkpoint_every == 0
                    and pos + 1 < len(mine)
                ):
                    _write_checkpoint(
                        ckpt,
                        {
                            "format": CHECKPOINT_FORMAT,
                            "key": full_key,
                            "next": pos + 1,
                            "consumers": [c.state_dict() for c in consumers],
                            "skipped": skipped,
                            "seen": seen,
                            "input_size": input_size,
                        },
                    )
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0

    if world > 1:
        import torch.distributed as dist

        for c in consumers:
            c.gather()
        parts: list[Any] = [None] * world
        dist.all_gather_object(parts, (skipped, seen, input_size))
        skipped = sorted(s for p in parts for s in p[0])
        seen = sum(p[1] for p in parts)
        input_size = next((p[2] for p in parts if p[2] is not None), None)
    return {
        "images": seen,
        "skipped": sorted(skipped),
        "resumed_at": start,
        "input_size": input_size,
        "seconds": seconds,
        "checkpoint": ckpt,
        "key": full_key,
    }


def remove_checkpoint(info: dict[str, Any]) -> None:
    """Delete this rank's checkpoint once the job's result is safely written."""
    ckpt = info.get("checkpoint")
    if ckpt is not None:
        Path(ckpt).unlink(missing_ok=True)


def _bar(enabled: bool, total: int, initial: int, desc: str, world: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    suffix = f" (rank 0 of {world})" if world > 1 else ""
    return tqdm(
        total=total,
        initial=initial,
        desc=desc + suffix,
        unit="img",
        unit_scale=False,
        smoothing=0.1,
    )


def _write_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"could not write checkpoint {path}: {e.strerror or e}") from None


def _remove_temporaries(path: Path) -> None:
    if path.parent.is_dir():
        for tmp in path.parent.glob(f"{path.name}.tmp-*"):
            tmp.unlink(missing_ok=True)


_KEY_NAMES = {
    "job": "job",
    "model": "model (its weights)",
    "layers": "layers",
    "corpus": "corpus (its files changed, or another corpus)",
    "batch_size": "batch size",
    "world": "number of processes",
}


def _read_checkpoint(path: Path, key: dict[str, Any]) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("not a convscope checkpoint")
    except Exception as e:
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise CheckpointError(f"checkpoint {path} is unreadable ({reason}); delete it") from None
    old = state["key"]
    diff = [k for k in sorted(set(old) | set(key)) if old.get(k) != key.get(k)]
    if diff:
        what = "; ".join(
            f"{_KEY_NAMES.get(k, k)}: {old.get(k)!r} then, {key.get(k)!r} now" for k in diff
        )
        raise CheckpointError(
            f"checkpoint {path} is from another run ({what}); delete it or write to another folder"
        )
    return state
