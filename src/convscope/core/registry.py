"""The one registry of explanation methods.

Every method registers itself here with :func:`register_method`; the Python API
(:func:`convscope.explain`), the CLI's ``--method`` choices, the demo/report and the docs all read it.
The registry fills itself on first use by importing every module of :mod:`convscope.attribution`
and :mod:`convscope.cam` (:data:`_METHOD_PACKAGES`); a new method is one new module there.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from convscope.errors import MethodError, did_you_mean

__all__ = ["MethodInfo", "get_method", "method_info", "methods", "register_method"]


@dataclass(frozen=True)
class MethodInfo:
    """What the registry knows of a method.

    ``fn(ctx)`` computes raw maps from a :class:`convscope.core.context.Context`.
    ``family`` is ``"gradient"`` (input-space maps) or ``"cam"`` (layer-space maps, upsampled).
    ``passes`` states the method's physical limit in passes over the plain model.
    """

    name: str
    fn: Callable[..., Any]
    family: str
    needs_layer: bool
    paper: str
    passes: str
    summary: str

    @property
    def options(self) -> dict[str, Any]:
        """The method's options and their defaults (its keyword parameters after ``ctx``)."""
        return dict(_options(self.fn))


@functools.cache
def _options(fn: Callable[..., Any]) -> tuple[tuple[str, Any], ...]:
    """(name, default) of ``fn``'s keyword parameters after ``ctx``, read once per function (the
    signature is asked for on every call of :func:`convscope.explain`)."""
    params = list(inspect.signature(fn).parameters.values())[1:]
    return tuple((p.name, p.default) for p in params)


_REGISTRY: dict[str, MethodInfo] = {}

# Packages whose modules register methods when imported; all are loaded on first use of the
# registry, so a new method is one new module and nothing else.
_METHOD_PACKAGES = ("convscope.attribution", "convscope.cam")
_loaded = False


def register_method(
    name: str,
    *,
    family: str,
    needs_layer: bool,
    paper: str,
    passes: str,
    summary: str,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``fn`` under ``name``."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise RuntimeError(f"method {name!r} registered twice")
        _REGISTRY[name] = MethodInfo(name, fn, family, needs_layer, paper, passes, summary)
        return fn

    return deco


def _load() -> None:
    global _loaded
    if _loaded:
        return
    import pkgutil

    for pkg_name in _METHOD_PACKAGES:
        pkg = importlib.import_module(pkg_name)
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{pkg_name}.{info.name}")
    _loaded = True


def methods() -> list[str]:
    """The names of all registered methods, sorted."""
    _load()
    return sorted(_REGISTRY)


def method_info(name: str) -> MethodInfo:
    """The :class:`MethodInfo` of ``name``."""
    return get_method(name)


def get_method(name: str) -> MethodInfo:
    _load()
    key = name.strip().lower().replace("-", "_")
    if key in _REGISTRY:
        return _REGISTRY[key]
    raise MethodError(
        f"unknown method {name!r}{did_you_mean(key, _REGISTRY)}; "
        f"known methods: {', '.join(sorted(_REGISTRY))}"
    )
