"""Targets: which output a method explains.

A target is

- ``"top1"`` (the default): each image's highest-scoring class; ``"top2"``... the k-th highest;
- a class index (``int``);
- a class name: exact (case-insensitive, any of the synonyms), else an unambiguous prefix or a
  close fuzzy match; an unknown or ambiguous name is an error that lists candidates;
- a list with one of the above per image;
- a callable ``f(output) -> (N,)`` scores, for anything else (a sum of classes, a regression head).

The score is the pre-softmax logit unless ``score="prob"`` or ``score="logprob"`` is asked.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from convscope.errors import TargetError

__all__ = ["Target", "TargetSpec", "resolve_class_name", "resolve_targets"]

TargetSpec = int | str | Callable[[torch.Tensor], torch.Tensor] | Sequence[int | str] | None

_TOPK = re.compile(r"^top(\d+)$")
SCORES = ("logit", "prob", "logprob")


def _norm(s: str) -> str:
    return re.sub(r"[\s_\-]+", " ", s.strip().lower())


def resolve_class_name(name: str, class_names: Sequence[str]) -> int:
    """The index of the class called ``name`` (see the module docstring for the matching rules)."""
    want = _norm(name)
    if not want:
        raise TargetError("empty class name")
    synonyms = [[_norm(s) for s in c.split(",")] + [_norm(c)] for c in class_names]
    exact = [i for i, syn in enumerate(synonyms) if want in syn]
    if len(exact) == 1:
        return exact[0]
    if len(exact) > 1:
        first = [i for i in exact if synonyms[i][0] == want]
        if len(first) == 1:
            return first[0]
        raise _ambiguous(name, exact, class_names)
    prefix = [i for i, syn in enumerate(synonyms) if any(s.startswith(want) for s in syn)]
    if len(prefix) == 1:
        return prefix[0]
    if len(prefix) > 1:
        raise _ambiguous(name, prefix, class_names)
    flat = {s: i for i, syn in enumerate(synonyms) for s in syn}
    close = difflib.get_close_matches(want, flat, n=5, cutoff=0.75)
    hits = list(dict.fromkeys(flat[c] for c in close))
    if len(hits) == 1 or (hits and difflib.SequenceMatcher(None, want, close[0]).ratio() > 0.9):
        return hits[0]
    if hits:
        raise _ambiguous(name, hits, class_names)
    raise TargetError(f"unknown class {name!r}: no class name matches it")


def _ambiguous(name: str, idx: list[int], class_names: Sequence[str]) -> TargetError:
    shown = "; ".join(f"{i}: {class_names[i]}" for i in idx[:8])
    more = f" and {len(idx) - 8} more" if len(idx) > 8 else ""
    return TargetError(f"class name {name!r} is ambiguous, it matches {shown}{more}")


@dataclass
class Target:
    """A resolved target for a batch of ``n`` images: call :meth:`scores` on the model output.

    ``fixed`` holds per-image class indices known before the forward pass (None entries are
    rank-based, like ``top1``, and are filled from the output by :meth:`scores`).
    """

    n: int
    fixed: list[int | None] | None
    ranks: list[int] | None
    fn: Callable[[torch.Tensor], torch.Tensor] | None = None
    score: str = "logit"
    indices: torch.Tensor | None = None  # filled by scores(): the class explained for each image
    last_scores: torch.Tensor | None = None  # filled by scores(): the scores, detached

    def subset(self, start: int, stop: int) -> Target:
        """The targets of images ``start:stop`` (for batching)."""
        return Target(
            stop - start,
            None if self.fixed is None else self.fixed[start:stop],
            None if self.ranks is None else self.ranks[start:stop],
            self.fn,
            self.score,
        )

    def scores(self, output: torch.Tensor) -> torch.Tensor:
        """The (N,) scores to explain, differentiable, from the model output."""
        if self.fn is not None:
            s = self.fn(output)
            if not isinstance(s, torch.Tensor) or s.shape != (output.shape[0],):
                raise TargetError(
                    f"a target callable must return a tensor of shape ({output.shape[0]},); "
                    f"got {getattr(s, 'shape', type(s).__name__)}"
                )
            self.last_scores = s.detach()
            return s
        if output.ndim != 2:
            raise TargetError(
                f"class targets need a model output of shape (N, classes); got {tuple(output.shape)}"
                "; pass a callable target"
            )
        if output.shape[0] != self.n:
            raise TargetError(f"{self.n} targets for a batch of {output.shape[0]}")
        n_classes = output.shape[1]
        idx = []
        order = None
        for i in range(self.n):
            fixed = self.fixed[i] if self.fixed is not None else None
            if fixed is None:
                if order is None:
                    order = output.detach().argsort(dim=1, descending=True)
                rank = self.ranks[i] if self.ranks is not None else 0
                if rank >= n_classes:
                    raise TargetError(f"top{rank + 1} asked, but the model has {n_classes} classes")
                idx.append(int(order[i, rank]))
            else:
                if not 0 <= fixed < n_classes:
                    raise TargetError(
                        f"class index {fixed} is out of range: the model has {n_classes} classes "
                        f"(0..{n_classes - 1})"
                    )
                idx.append(fixed)
        self.indices = torch.tensor(idx, device=output.device)
        if self.score == "logit":
            values = output
        elif self.score == "prob":
            values = output.softmax(dim=1)
        else:
            values = output.log_softmax(dim=1)
        out = values.gather(1, self.indices[:, None])[:, 0]
        self.last_scores = out.detach()
        return out


def _one(t: Any, class_names: Sequence[str] | None) -> tuple[int | None, int]:
    """(fixed index or None, rank) for one per-image target."""
    if t is None:
        return None, 0
    if isinstance(t, bool):
        raise TargetError(f"bad target {t!r}")
    if isinstance(t, int) or (isinstance(t, torch.Tensor) and t.ndim == 0):
        i = int(t)
        if i < 0:
            raise TargetError(f"class index {i} is out of range: indices start at 0")
        if class_names is not None and i >= len(class_names):
            raise TargetError(
                f"class index {i} is out of range: the model has {len(class_names)} classes "
                f"(0..{len(class_names) - 1})"
            )
        return i, 0
    if isinstance(t, str):
        s = t.strip().lower()
        m = _TOPK.match(s)
        if m:
            k = int(m.group(1))
            if k < 1:
                raise TargetError(f"bad target {t!r}: top-k starts at top1")
            return None, k - 1
        if s.lstrip("-").isdigit():
            return _one(int(s), class_names)
        if class_names is None:
            raise TargetError(f"target {t!r} is a class name, but this model has no class names")
        return resolve_class_name(t, class_names), 0
    raise TargetError(
        f"bad target of type {type(t).__name__}: use an index, a name, 'top1' or a callable"
    )


def resolve_targets(
    target: TargetSpec, n: int, class_names: Sequence[str] | None = None, score: str = "logit"
) -> Target:
    """Resolve ``target`` for a batch of ``n`` images (names and ranges are checked here)."""
    if score not in SCORES:
        raise TargetError(f"unknown score {score!r}; use one of {', '.join(SCORES)}")
    if callable(target) and not isinstance(target, str | int):
        return Target(n, None, None, fn=target, score=score)
    if isinstance(target, torch.Tensor) and target.ndim == 1:
        target = target.tolist()
    if isinstance(target, list | tuple):
        if len(target) != n:
            raise TargetError(f"{len(target)} targets given for {n} images; give one per image")
        pairs = [_one(t, class_names) for t in target]
    else:
        pairs = [_one("top1" if target is None else target, class_names)] * n
    return Target(n, [p[0] for p in pairs], [p[1] for p in pairs], score=score)
