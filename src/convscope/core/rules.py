"""Backward rules for rectifiers: the core of guided backpropagation and the deconvnet.

:class:`RectifierRules` makes every rectifier module of a model (``nn.ReLU``, ``nn.ReLU6``, and
``nn.Hardtanh`` with ``min_val = 0``) pass gradients by a chosen rule, per call (a module reused
several times per forward is handled at each call), for the duration of a ``with`` block. Let
:math:`x` be the rectifier's forward input, :math:`(l, u)` its active range (ReLU: :math:`(0,
\\infty)`, ReLU6: :math:`(0, 6)`) and :math:`g` the gradient arriving from above:

- ``"plain"``: :math:`g \\cdot 1[l < x < u]`, the true derivative (what autograd does anyway);
- ``"guided"`` (Springenberg et al. 2015): :math:`\\max(g, 0) \\cdot 1[l < x < u]`: only where
  the unit was active in the forward pass *and* the gradient is positive;
- ``"deconvnet"`` (Zeiler & Fergus 2014): :math:`\\max(g, 0)`, ignoring the forward pass.

The rule is read when the backward pass runs, so one forward pass serves several backward passes
under different rules (guided Grad-CAM takes Grad-CAM's gradient with ``"plain"`` and guided
backpropagation's with ``"guided"`` from the same forward pass).

How: a forward pre-hook keeps the rectifier's input (cloning it first for in-place modules), and a
forward hook replaces the module's output with the same values computed by an autograd function
whose backward applies the rule and routes the gradient straight to that input. Rectifiers applied
as functions (``torch.relu``, ``F.relu6``, ``x.clamp(min=0)``) outside rectifier modules cannot be
rewritten; they are detected during the forward pass (a ``TorchFunctionMode``) and reported with
:class:`convscope.errors.MethodError`, never silently left with their plain gradient.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from convscope.errors import MethodError

__all__ = ["RULES", "RectifierRules", "active_range"]

RULES = ("plain", "guided", "deconvnet")


def active_range(module: nn.Module) -> tuple[float, float] | None:
    """(lower, upper) of a rectifier module's linear region, or None if it is not a rectifier."""
    if isinstance(module, nn.ReLU):
        return 0.0, math.inf
    if isinstance(module, nn.Hardtanh) and float(module.min_val) == 0.0:  # ReLU6 is a Hardtanh
        return 0.0, float(module.max_val)
    return None


class _Rule(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, lo: float, hi: float, owner: RectifierRules) -> Any:
        active = (x > lo) & (x < hi) if math.isfinite(hi) else x > lo
        ctx.save_for_backward(active)
        ctx.owner = owner
        return x.clamp(min=lo) if not math.isfinite(hi) else x.clamp(lo, hi)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> Any:
        (active,) = ctx.saved_tensors
        rule = ctx.owner.rule
        if rule == "plain":
            gi = g * active
        elif rule == "guided":
            gi = g.clamp(min=0) * active
        else:
            gi = g.clamp(min=0)
        return gi, None, None, None


_FUNCTIONAL = {
    torch.relu,
    torch.relu_,
    torch.nn.functional.relu,
    torch.nn.functional.relu_,
    torch.nn.functional.relu6,
    torch.nn.functional.hardtanh,
    torch.nn.functional.hardtanh_,
    torch.Tensor.relu,
    torch.Tensor.relu_,
}
_CLAMPS = {
    torch.clamp,
    torch.clamp_min,
    torch.Tensor.clamp,
    torch.Tensor.clamp_,
    torch.Tensor.clamp_min,
}


class _Watch(TorchFunctionMode):
    def __init__(self, owner: RectifierRules) -> None:
        super().__init__()
        self.owner = owner

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.owner._depth == 0 and (
            func in _FUNCTIONAL or (func in _CLAMPS and _is_relu_clamp(args, kwargs))
        ):
            self.owner.functional.append(getattr(func, "__name__", str(func)))
        return func(*args, **kwargs)


def _is_relu_clamp(args: tuple, kwargs: dict) -> bool:
    lo = kwargs.get("min", args[1] if len(args) > 1 else None)
    return isinstance(lo, int | float) and lo == 0


class RectifierRules:
    """Within ``with RectifierRules(model, rule):`` rectifier modules pass gradients by ``rule``.

    Attributes:
        rule: ``"plain"``, ``"guided"`` or ``"deconvnet"``; may be changed between backward passes.
        modules: the rectifier modules found (name -> module).
        functional: names of rectifier functions called outside rectifier modules in the forward
            passes so far; :meth:`check` raises if there are any.
    """

    def __init__(self, model: nn.Module, rule: str = "guided", method: str = "this method") -> None:
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}; use one of {', '.join(RULES)}")
        self.model, self.rule, self.method = model, rule, method
        self.modules = {n: m for n, m in model.named_modules() if n and active_range(m)}
        if not self.modules:
            raise MethodError(
                f"{method} needs rectifier modules (nn.ReLU, nn.ReLU6) and "
                f"{type(model).__name__} has none"
            )
        self.functional: list[str] = []
        self._depth = 0
        self._inputs: dict[int, list[torch.Tensor]] = {}
        self._handles: list[Any] = []
        self._watch = _Watch(self)

    def __enter__(self) -> RectifierRules:
        try:
            for m in self.modules.values():
                self._handles.append(m.register_forward_pre_hook(self._pre))
                self._handles.append(m.register_forward_hook(self._post))
            self._watch.__enter__()
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._watch.__exit__(None, None, None)
        finally:
            self._remove()

    def _remove(self) -> None:
        while self._handles:
            self._handles.pop().remove()
        self._inputs.clear()
        self._depth = 0

    def _pre(self, module: nn.Module, args: tuple) -> Any:
        self._depth += 1
        x = args[0]
        self._inputs.setdefault(id(module), []).append(x)
        if getattr(module, "inplace", False):
            return (x.clone(),) + tuple(args[1:])  # the module's in-place op must not touch x
        return None

    def _post(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        x = self._inputs[id(module)].pop()
        lo, hi = active_range(module)
        out = _Rule.apply(x, lo, hi, self)
        self._depth -= 1
        return out

    def check(self) -> None:
        """Raise MethodError if a functional rectifier ran outside rectifier modules."""
        if self.functional:
            names = sorted(set(self.functional))
            raise MethodError(
                f"{self.method} cannot rewrite rectifiers applied as functions ({', '.join(names)}: "
                f"{len(self.functional)} call(s) outside nn.ReLU/nn.ReLU6 modules); its map would "
                "silently mix in plain gradients; use rectifier modules in the model"
            )
