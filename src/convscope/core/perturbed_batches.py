"""Bookkeeping shared by the methods that run many modified copies of a batch.

SmoothGrad, integrated gradients, occlusion, Score-CAM and Ablation-CAM all score many perturbed
(noised, interpolated, occluded, masked or ablated) copies of the ``N`` images they explain.

Layout: row ``p = j * N + i`` of the perturbed batch is copy ``j`` of image ``i``, so every run of ``N`` rows
is one perturbed copy of the whole batch, in its order. Class targets are read with ``gather``
on the classes resolved once on the clean input; a callable target is applied to each run of
``N`` rows (so it sees a batch shaped and ordered like the clean one), which is why, with a
callable target, ``batch_size`` is rounded down to a multiple of ``N`` (and at least ``N``).
``batch_size=None`` picks the rows per pass by device (:func:`default_rows`): on a GPU one
method-specific amount (one image's worth of copies: ``n_samples`` rows for SmoothGrad, ``steps``
for integrated gradients, 64 masked or ablated copies for Score-CAM and Ablation-CAM), so memory
does not grow with ``N`` (all ``N * steps`` copies of 4 Lite0 images at once take ~17 GB); on a
CPU, as many rows as fit :data:`CPU_PASS_BYTES` of the batched tensor, because large passes are
slower there, not faster (measured on EfficientNet-Lite0 with 2 threads: a no-grad forward of 32
images takes 0.42 s in passes of 4 rows and 0.93 s in one pass of 32; occlusion on 2 images, 162
occluded copies: 2.5 s by 4 rows, 6.3 s by 64). The cause is memory, not arithmetic: the
activations of large passes fall out of the caches and, with glibc's allocator, are returned to
the system and faulted in again at every pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import torch

from convscope.core.context import Context
from convscope.core.targets import Target
from convscope.errors import MethodError, TargetError

__all__ = [
    "CPU_PASS_BYTES",
    "as_baseline",
    "check_batch_size",
    "clean_forward",
    "copy_scores",
    "default_rows",
    "empty_rows",
    "progress",
    "row_chunks",
]

T = TypeVar("T")


def clean_forward(ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
    """(output, scores) on the clean batch, without autograd; resolves ``ctx.target.indices``."""
    with torch.no_grad():
        output = ctx.model(ctx.x)
        scores = ctx.target.scores(output)
    return output.detach(), scores.detach()


def copy_scores(target: Target, output: torch.Tensor, images: torch.Tensor, n: int) -> torch.Tensor:
    """Scores of perturbed copies: row ``r`` of ``output`` comes from image ``images[r]``.

    Class targets use the classes resolved on the clean batch (:func:`clean_forward`); a callable
    target is applied to each run of ``n`` rows, which must be whole copies of the clean batch.
    ``target`` itself is left as the clean forward set it.
    """
    if target.fn is None:
        if target.score == "prob":
            output = output.softmax(dim=1)
        elif target.score == "logprob":
            output = output.log_softmax(dim=1)
        return output.gather(1, target.indices[images][:, None])[:, 0]
    if output.shape[0] % n:  # row_chunks hands callables whole copies; a bug if raised
        raise RuntimeError("callable targets need whole copies of the batch")
    parts = []
    for group in output.split(n):
        s = target.fn(group)
        if not isinstance(s, torch.Tensor) or s.shape != (n,):
            raise TargetError(
                f"a target callable must return a tensor of shape ({n},); "
                f"got {getattr(s, 'shape', type(s).__name__)}"
            )
        parts.append(s)
    return torch.cat(parts)


# The most bytes of the batched tensor (inputs, or a layer's activations for a tail) per pass on
# a CPU when batch_size is None: four 3 x 224 x 224 float32 images (see the module's docstring).
CPU_PASS_BYTES = 4 * 3 * 224 * 224 * 4


def check_batch_size(batch_size: Any, name: str = "batch_size") -> None:
    """The one check of a ``batch_size`` (rows per pass): None (the default) or a positive
    integer; anything else is a :class:`MethodError` naming ``name`` (``"--batch-size"`` in the
    CLI)."""
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise MethodError(f"{name} must be a positive integer, not {batch_size!r}")


def default_rows(default: int, like: torch.Tensor | None) -> int:
    """Rows per pass when the caller gave no ``batch_size``: ``default`` on a GPU; on a CPU at most
    as many rows of ``like`` (the tensor whose perturbed copies are batched: the input, or the
    layer's activation for a tail) as fit :data:`CPU_PASS_BYTES` (at least one)."""
    if like is None or like.device.type != "cpu" or like.ndim == 0 or like.shape[0] == 0:
        return default
    row = like[0].numel() * like.element_size()
    return max(1, min(default, CPU_PASS_BYTES // max(row, 1)))


def row_chunks(
    rows: int,
    n: int,
    batch_size: int | None,
    target: Target,
    default: int,
    whole: bool = False,
    like: torch.Tensor | None = None,
) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges of at most ``batch_size`` perturbed rows (if None:
    :func:`default_rows` of ``default`` and ``like``); whole copies of the ``n``-image batch (at
    least one) when the target is a callable or ``whole`` is set."""
    check_batch_size(batch_size)
    step = min(default_rows(default, like) if batch_size is None else batch_size, rows)
    if whole or target.fn is not None:
        step = max(n, step - step % n)
    return [(s, min(s + step, rows)) for s in range(0, rows, step)]


def progress(chunks: Sequence[T], ctx: Context, desc: str) -> Iterable[T]:
    """``chunks``, with a progress bar when the caller asked for one and there are several."""
    if not ctx.progress or len(chunks) < 2:
        return chunks
    from tqdm.auto import tqdm

    return tqdm(chunks, desc=desc, unit="pass", leave=False)


def empty_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """An uninitialized (rows, C, H, W) buffer in ``x``'s dtype, device and memory format.

    The memory format matters: convolutions pick other kernels for channels-last inputs, and on
    EfficientNet-Lite0 the input gradients of the two formats differ by up to ~1e-3 (relative), so
    perturbed copies are kept in the format of the clean input (and of plain saliency).
    """
    fmt = torch.contiguous_format
    if x.ndim == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        fmt = torch.channels_last
    return torch.empty((rows, *x.shape[1:]), dtype=x.dtype, device=x.device, memory_format=fmt)


def as_baseline(baseline: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``baseline`` as a tensor of ``x``'s dtype and device with ``x.ndim`` dims that broadcasts
    to ``x`` (its first dim is 1 or N)."""
    if isinstance(baseline, bool) or not isinstance(baseline, int | float | torch.Tensor):
        raise MethodError(
            f"baseline must be a number or a tensor broadcastable to the input, "
            f"not {type(baseline).__name__}"
        )
    b = torch.as_tensor(
        baseline.detach() if isinstance(baseline, torch.Tensor) else baseline,
        dtype=x.dtype,
        device=x.device,
    )
    shape = tuple(x.shape)
    ok = b.ndim <= x.ndim
    if ok:
        b = b.reshape((1,) * (x.ndim - b.ndim) + tuple(b.shape))
        try:
            ok = torch.broadcast_shapes(b.shape, x.shape) == x.shape
        except RuntimeError:
            ok = False
    if not ok:
        raise MethodError(
            f"a baseline of shape {tuple(baseline.shape)} does not broadcast to the input {shape}"
        )
    return b
