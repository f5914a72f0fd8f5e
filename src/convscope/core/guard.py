"""Keeping the user's model exactly as it was.

:func:`preserved` snapshots what a method may touch (each module's ``training`` flag, each
parameter's ``requires_grad``, the hook dictionaries and the module tree) and puts every piece back
on exit, also when the body raised. :func:`model_fingerprint` is the full, comparable picture the
tests use (weights and buffers bitwise too).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["model_fingerprint", "preserved"]

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)


def _hooks(module: nn.Module) -> dict[str, dict[int, Any]]:
    return {name: dict(getattr(module, name)) for name in _HOOK_DICTS if hasattr(module, name)}


class _Snapshot:
    """What :func:`preserved` restores, taken in one walk over the modules.

    Cheap by design (it runs on every call, and on a GPU the model's own passes take a few
    milliseconds): the module tree is walked once and parameters come from that walk; attributes
    are read from each module's ``__dict__`` (through ``getattr`` only for TorchScript modules,
    which keep them elsewhere); hook dictionaries are copied only when not empty (the user's own
    hooks, compared in full on exit), the empty ones are checked by their length; on exit only
    what differs is written back.
    """

    __slots__ = ("modules", "training", "children", "hooks", "signature", "params", "requires_grad")

    def __init__(self, model: nn.Module) -> None:
        self.modules = list(model.modules())
        views = [_view(m) for m in self.modules]
        self.training = [v["training"] for v in views]
        self.children = [dict(v["_modules"]) if v["_modules"] else None for v in views]
        self.signature = _hook_lengths(views)
        # the hooks modules already had (the user's): copied, and compared in full on exit
        k = len(_HOOK_DICTS)
        self.hooks = {
            i: {name: dict(v[name]) for name in _HOOK_DICTS if v.get(name)}
            for i, v in enumerate(views)
            if any(self.signature[i * k : (i + 1) * k])
        }
        params: dict[int, nn.Parameter] = {}
        for v in views:
            for p in v["_parameters"].values():
                if p is not None:
                    params.setdefault(id(p), p)
        self.params = list(params.values())
        self.requires_grad = [p.requires_grad for p in self.params]

    def restore(self) -> None:
        views = [_view(m) for m in self.modules]
        for m, v, kids, flag in zip(self.modules, views, self.children, self.training):
            current = v["_modules"]
            if (kids or {}) != (current if type(current) is dict else dict(current)):
                current.clear()
                current.update(kids or {})
            if v["training"] is not flag:
                m.training = flag
        lengths = _hook_lengths(views)
        changed = set(self.hooks)  # modules with hooks of their own: compared in full
        if lengths != self.signature:  # a hook was added or removed somewhere: find where
            k = len(_HOOK_DICTS)
            changed.update(
                i
                for i in range(len(views))
                if lengths[i * k : (i + 1) * k] != self.signature[i * k : (i + 1) * k]
            )
        for i in changed:
            v, saved = views[i], self.hooks.get(i, {})
            for name in _HOOK_DICTS:
                h = v.get(name)
                if h is not None and h != saved.get(name, {}):
                    h.clear()
                    h.update(saved.get(name, {}))
        for p, flag in zip(self.params, self.requires_grad):
            if p.requires_grad is not flag:
                p.requires_grad_(flag)


_VIEWED = ("training", "_modules", "_parameters", *_HOOK_DICTS)


def _view(module: nn.Module) -> dict[str, Any]:
    """The attributes the guard reads: the module's ``__dict__`` itself for an ordinary module;
    for a TorchScript module (which keeps them elsewhere) a dict of them read with ``getattr``."""
    d = module.__dict__
    if "_modules" in d and "training" in d:
        return d
    return {name: getattr(module, name, None) for name in _VIEWED} | {
        "_modules": getattr(module, "_modules", None) or {},
        "_parameters": getattr(module, "_parameters", None) or {},
    }


def _hook_lengths(views: list[dict[str, Any]]) -> list[int]:
    """The length of every hook dictionary of every module, in one flat list: a hook that a
    call added and did not remove changes it (so does one it removed)."""
    return [len(v.get(name) or ()) for v in views for name in _HOOK_DICTS]


@contextlib.contextmanager
def preserved(
    model: nn.Module, eval_mode: bool = True, frozen: bool = False
) -> Iterator[nn.Module]:
    """Run the body with ``model`` in eval mode (if asked) and restore its state afterwards.

    With ``frozen`` the parameters do not require gradients inside the body: no method needs
    gradients of the weights, and autograd then records no graph for the layers that come before
    the tensors a method differentiates by (its input, or a recorded layer). Grad-CAM at
    EfficientNet-Lite0's head runs about a quarter faster so.

    Restored on exit: every module's ``training`` flag, every parameter's ``requires_grad``, every
    module's hook dictionaries, and every module's children (a swapped module is put back).
    """
    snap = _Snapshot(model)
    try:
        if eval_mode and any(snap.training):
            model.eval()
        if frozen:
            for p, flag in zip(snap.params, snap.requires_grad):
                if flag:
                    p.requires_grad_(False)
        yield model
    finally:
        snap.restore()


def model_fingerprint(model: nn.Module) -> dict[str, Any]:
    """Everything about ``model`` a method must leave unchanged, in a form that compares with ==."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict(keep_vars=True).items()}
    return {
        "modules": [(n, type(m).__name__, id(m)) for n, m in model.named_modules()],
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "hooks": [{k: sorted(v) for k, v in _hooks(m).items()} for m in model.modules()],
        "state": state,
        "inplace": [getattr(m, "inplace", None) for m in model.modules()],
    }


def fingerprints_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True when two :func:`model_fingerprint` results are the same (tensors compared bitwise)."""
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if key == "state":
            if x.keys() != y.keys() or not all(torch.equal(x[k], y[k]) for k in x):
                return False
        elif key == "grads":
            if len(x) != len(y):
                return False
            for g, h in zip(x, y):
                if (g is None) != (h is None) or (g is not None and not torch.equal(g, h)):
                    return False
        elif x != y:
            return False
    return True
