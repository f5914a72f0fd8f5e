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
    modules = list(model.modules())
    training = [m.training for m in modules]
    requires_grad = [(p, p.requires_grad) for p in model.parameters()]
    hooks = [_hooks(m) for m in modules]
    children = [dict(m._modules) for m in modules]
    try:
        if eval_mode and any(training):
            model.eval()
        if frozen:
            for p, _ in requires_grad:
                p.requires_grad_(False)
        yield model
    finally:
        for m, kids in zip(modules, children):
            if dict(m._modules) != kids:
                m._modules.clear()
                m._modules.update(kids)
        for m, flag in zip(modules, training):
            m.training = flag
        for p, flag in requires_grad:
            p.requires_grad_(flag)
        for m, saved in zip(modules, hooks):
            for name, value in saved.items():
                current = getattr(m, name)
                if dict(current) != value:
                    current.clear()
                    current.update(value)


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
