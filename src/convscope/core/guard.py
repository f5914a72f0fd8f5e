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
    milliseconds): the module tree is walked once, parameters come from that walk, each module's
    attributes are read from its ``__dict__`` (no ``nn.Module.__getattr__``), only non-empty hook
    dictionaries are copied, and on exit only what differs is written back.
    """

    __slots__ = ("modules", "training", "children", "hooks", "params", "requires_grad")

    def __init__(self, model: nn.Module) -> None:
        self.modules = list(model.modules())
        self.training = [_attr(m, "training") for m in self.modules]
        self.children = [dict(c) if (c := _attr(m, "_modules")) else None for m in self.modules]
        self.hooks = [
            [(name, dict(h)) for name in _HOOK_DICTS if (h := _attr(m, name))] for m in self.modules
        ]
        params: dict[int, nn.Parameter] = {}
        for m in self.modules:
            for p in (_attr(m, "_parameters") or {}).values():
                if p is not None:
                    params.setdefault(id(p), p)
        self.params = list(params.values())
        self.requires_grad = [p.requires_grad for p in self.params]

    def restore(self) -> None:
        for m, kids, flag, saved in zip(self.modules, self.children, self.training, self.hooks):
            current = _attr(m, "_modules")
            if current is not None and (kids or {}) != (
                current if type(current) is dict else dict(current)
            ):
                current.clear()
                current.update(kids or {})
            if _attr(m, "training") is not flag:
                m.training = flag
            kept = dict(saved)
            for name in _HOOK_DICTS:
                h = _attr(m, name)
                if h is None:
                    continue
                want = kept.get(name)
                if (want or {}) != h:
                    h.clear()
                    h.update(want or {})
        for p, flag in zip(self.params, self.requires_grad):
            if p.requires_grad is not flag:
                p.requires_grad_(flag)


def _attr(module: nn.Module, name: str) -> Any:
    """``module.<name>`` read from its ``__dict__`` (fast), else through ``getattr`` (TorchScript
    modules keep their attributes elsewhere); None when it has none."""
    d = module.__dict__
    return d[name] if name in d else getattr(module, name, None)


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
