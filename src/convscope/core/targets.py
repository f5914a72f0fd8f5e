"""Targets: which output a method explains.

A target is

- ``"top1"`` (the default): each image's highest-scoring class; ``"top2"``... the k-th highest;
- a class index (``int``);
- a class name: a whole synonym (case-insensitive), else whole words of one (``"Persian"``;
  never part of a word: ``"dog"`` is not ``"dogsled"``), else an unambiguous prefix, else a
  close misspelling; a match that is not a whole synonym is announced with a warning, and an
  unknown or ambiguous name is an error that lists the candidates, best first;
- a list with one of the above per image;
- a callable ``f(output) -> (N,)`` scores, for anything else (a sum of classes, a regression head).

The score is the pre-softmax logit unless ``score="prob"`` or ``score="logprob"`` is asked.
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from convscope.errors import ConvscopeWarning, TargetError

__all__ = [
    "ClassMatch",
    "Target",
    "TargetSpec",
    "match_class_name",
    "resolve_class_name",
    "resolve_targets",
]

TargetSpec = int | str | Callable[[torch.Tensor], torch.Tensor] | Sequence[int | str] | None

_TOPK = re.compile(r"^top(\d+)$")
SCORES = ("logit", "prob", "logprob")


def _norm(s: str) -> str:
    return re.sub(r"[\s_\-]+", " ", s.strip().lower())


@dataclass(frozen=True)
class ClassMatch:
    """How a class name was matched: the class ``index``, the ``synonym`` that matched, and
    ``how``: ``"exact"`` (a whole synonym), ``"word"`` (whole words of a synonym), ``"prefix"``
    (the beginning of a synonym) or ``"close"`` (a close misspelling)."""

    index: int
    synonym: str
    how: str


_HOW = {
    "word": "the only class with these words in its name",
    "prefix": "the only class name that begins so",
    "close": "the closest class name",
}


def match_class_name(name: str, class_names: Sequence[str]) -> ClassMatch:
    """Match ``name`` to one class, trying in turn (case, spaces, ``_`` and ``-`` ignored):

    1. a whole synonym (``"tabby cat"``, ``"Siamese"``);
    2. whole words of a synonym (``"Persian"`` -> ``"Persian cat"``), never part of a word, so
       ``"dog"`` is not ``"dogsled"``;
    3. the beginning of a synonym (``"espr"`` -> ``"espresso"``);
    4. a close misspelling (``"expresso"``).

    A tier that matches several classes is an error listing them, best first (those whose
    name ends with the words, as ``"tabby cat"`` does for ``"cat"``, before ``"cat bear"``),
    so ``"cat"`` offers tabby, tiger cat, Persian cat... and ``"dog"`` the dog breeds.
    """
    want = _norm(name)
    if not want:
        raise TargetError("empty class name")
    synonyms = [
        list(dict.fromkeys([_norm(s) for s in c.split(",")] + [_norm(c)])) for c in class_names
    ]
    exact = [i for i, syn in enumerate(synonyms) if want in syn]
    if len(exact) == 1:
        return ClassMatch(exact[0], want, "exact")
    if len(exact) > 1:
        first = [i for i in exact if synonyms[i][0] == want]
        if len(first) == 1:
            return ClassMatch(first[0], want, "exact")
        raise _ambiguous(name, [(i, want) for i in exact], class_names)
    padded = f" {want} "
    words = []  # (rank: 0 when the synonym ends with the words, class, synonym)
    for i, syn in enumerate(synonyms):
        hits = [s for s in syn if padded in f" {s} "]
        if hits:
            ends = [s for s in hits if f" {s}".endswith(f" {want}")]
            words.append((0 if ends else 1, i, (ends or hits)[0]))
    if len(words) == 1:
        return ClassMatch(words[0][1], words[0][2], "word")
    if words:
        raise _ambiguous(name, [(i, s) for _, i, s in sorted(words)], class_names)
    prefix = []
    for i, syn in enumerate(synonyms):
        hits = [s for s in syn if s.startswith(want)]
        if hits:
            prefix.append((i, hits[0]))
    if len(prefix) == 1:
        return ClassMatch(prefix[0][0], prefix[0][1], "prefix")
    if prefix:
        raise _ambiguous(name, prefix, class_names)
    flat = {s: i for i, syn in enumerate(synonyms) for s in syn}
    best: dict[int, tuple[float, str]] = {}  # class -> (similarity, synonym), best first
    for c in difflib.get_close_matches(want, flat, n=8, cutoff=0.75):
        best.setdefault(flat[c], (difflib.SequenceMatcher(None, want, c).ratio(), c))
    ranked = sorted(best.items(), key=lambda kv: -kv[1][0])
    # one candidate, or one clearly closer than the next (expresso: espresso 0.88, press 0.77)
    if len(ranked) == 1 or (ranked and ranked[0][1][0] - ranked[1][1][0] >= 0.08):
        return ClassMatch(ranked[0][0], ranked[0][1][1], "close")
    if ranked:
        raise _ambiguous(name, [(i, c) for i, (_, c) in ranked], class_names)
    raise TargetError(f"unknown class {name!r}: no class name matches it")


def resolve_class_name(name: str, class_names: Sequence[str]) -> int:
    """The index of the class called ``name`` (the rules: :func:`match_class_name`). A match that
    is not a whole synonym is announced with a :class:`~convscope.errors.ConvscopeWarning`
    (the CLI prints it as a note), so a guess never passes silently."""
    m = match_class_name(name, class_names)
    if m.how != "exact":
        short = class_names[m.index].split(",")[0].strip()
        via = "" if _norm(short) == m.synonym else f" ({m.synonym})"
        warnings.warn(
            ConvscopeWarning(
                f"class name {name!r} taken as class {m.index} {short!r}{via}: {_HOW[m.how]}"
            ),
            stacklevel=2,
        )
    return m.index


def _ambiguous(name: str, found: list[tuple[int, str]], class_names: Sequence[str]) -> TargetError:
    """An error listing the candidate classes in the given order, with the synonym that matched
    where it is not the class's first name."""
    shown = []
    for i, syn in found[:8]:
        short = class_names[i].split(",")[0].strip()
        shown.append(f"{i}: {short}" + ("" if _norm(short) == syn else f" ({syn})"))
    more = f" and {len(found) - 8} more" if len(found) > 8 else ""
    return TargetError(
        f"class name {name!r} is ambiguous, it matches {'; '.join(shown)}{more}; "
        "name one of them (or give its index)"
    )


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
        if not isinstance(output, torch.Tensor):
            from convscope.core.outputs import not_a_tensor

            raise not_a_tensor(output)
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
        self.indices = self._indices(output, n_classes)
        if self.score == "logit":
            values = output
        elif self.score == "prob":
            values = output.softmax(dim=1)
        else:
            values = output.log_softmax(dim=1)
        out = values.gather(1, self.indices[:, None])[:, 0]
        self.last_scores = out.detach()
        return out

    def _indices(self, output: torch.Tensor, n_classes: int) -> torch.Tensor:
        """The (N,) class explained for each image, made on the output's device without reading
        the output back to the host (no synchronization in the middle of a method's passes):
        fixed classes are copied over without blocking, rank-based ones gathered from the order
        of the output on the device."""
        fixed = self.fixed if self.fixed is not None else [None] * self.n
        for f in fixed:
            if f is not None and not 0 <= f < n_classes:
                raise TargetError(
                    f"class index {f} is out of range: the model has {n_classes} classes "
                    f"(0..{n_classes - 1})"
                )
        ranks = [0 if r is None else r for r in (self.ranks or [0] * self.n)]
        ranked = [r for f, r in zip(fixed, ranks) if f is None]
        if ranked and max(ranked) >= n_classes:
            raise TargetError(f"top{max(ranked) + 1} asked, but the model has {n_classes} classes")
        device = output.device
        # a small host tensor copied without blocking (the copy is staged at once; nothing waits
        # for the device)
        given = torch.tensor([-1 if f is None else f for f in fixed]).to(device, non_blocking=True)
        if not ranked:
            return given
        order = output.detach().argsort(dim=1, descending=True)
        rank = torch.tensor(ranks).to(device, non_blocking=True)
        picked = order.gather(1, rank[:, None])[:, 0]
        return picked if len(ranked) == self.n else torch.where(given >= 0, given, picked)


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
