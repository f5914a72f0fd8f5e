"""The errors convscope raises for bad input.

Every error a user can cause is a :class:`ConvscopeError`: its message is one line that says what was
wrong and, where it helps, what would be right. The CLI prints that line and exits non-zero.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "ConvscopeError",
    "ConvscopeWarning",
    "ImageError",
    "LayerError",
    "MethodError",
    "ModelError",
    "TargetError",
    "closest",
]


class ConvscopeError(ValueError):
    """Base class of every user-facing error; the message is one line."""


class ConvscopeWarning(UserWarning):
    """Something convscope chose for you that you should know about (a class name matched by its
    words, prefix or spelling); the CLI prints it as one ``convscope: note:`` line."""


class ImageError(ConvscopeError):
    """An input image is missing, unreadable, corrupt, too large or of an unsupported kind."""


class ModelError(ConvscopeError):
    """A model name, file or module cannot be loaded or used."""


class LayerError(ConvscopeError):
    """A layer name does not exist, is ambiguous, or its output does not suit the method."""


class TargetError(ConvscopeError):
    """A target class is unknown, ambiguous or out of range."""


class MethodError(ConvscopeError):
    """A method is unknown or cannot be applied to this model."""


def closest(word: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """The candidates nearest to ``word`` (by difflib's ratio), best first."""
    pool = list(candidates)
    hits = difflib.get_close_matches(word, pool, n=n, cutoff=0.5)
    if len(hits) < n:
        low = word.lower()
        hits += [c for c in pool if low and low in c.lower() and c not in hits][: n - len(hits)]
    return hits


def did_you_mean(word: str, candidates: Iterable[str], n: int = 5) -> str:
    """' (did you mean: a, b?)' or '' when nothing is close."""
    hits = closest(word, candidates, n)
    return f" (did you mean: {', '.join(hits)}?)" if hits else ""
