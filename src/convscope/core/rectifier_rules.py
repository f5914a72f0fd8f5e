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
under the plain and guided rules (guided Grad-CAM takes Grad-CAM's gradient with ``"plain"`` and guided
backpropagation's with ``"guided"`` from the same forward pass).

How (the cheapest way that is exact): for ``"plain"`` and ``"guided"`` the module runs as usual and
a tensor hook on its output takes :math:`\\max(g, 0)` (guided) of the gradient arriving there; the
module's own backward then applies :math:`1[l < x < u]`, so a guided pass costs one clamp per
rectifier call over the plain backward. For ``"deconvnet"``, whose backward must ignore the forward
mask, a forward hook replaces the output with the same values computed by an autograd function
whose backward is :math:`\\max(g, 0)` straight to the module's input (an in-place module's input is
cloned first so that it survives; a forward hook of the model's own that changes a rectifier's
output is therefore overridden under this rule, while guided and plain keep the output as it is).
The guided and plain rules may be switched between backward passes of one forward pass; the
deconvnet graph is chosen at the start. Rectifiers applied
as functions (``torch.relu``, ``F.relu6``, ``x.clamp(min=0)``, ``x.clip(0, 6)``,
``F.hardtanh(x, 0, 6)``, ``F.threshold(x, 0, 0)``, ``torch.maximum(x, zeros)``) outside rectifier
modules cannot be rewritten; they are detected during the forward pass (a ``TorchFunctionMode``,
once per model: a model found clean is not watched again while its rectifier modules stay the
same) and reported with
:class:`convscope.errors.MethodError`, never silently left with their plain gradient.
"""

from __future__ import annotations

import math
from typing import Any
from weakref import WeakKeyDictionary

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
    if isinstance(module, nn.Threshold) and module.threshold == 0 and module.value == 0:
        return 0.0, math.inf  # x where x > 0 else 0: a ReLU
    return None


class _Rule(torch.autograd.Function):
    """The robust form of every rule: the rectifier's values forward, computed from its (kept)
    input, with the forward mask saved; the rule applied to the gradient backward."""

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


class _Deconv(torch.autograd.Function):
    r"""The rectifier's values forward; :math:`\max(g, 0)` backward, whatever the forward did."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, lo: float, hi: float) -> Any:
        return x.clamp(min=lo) if not math.isfinite(hi) else x.clamp(lo, hi)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> Any:
        return g.clamp(min=0), None, None


# Functions that rectify whatever their arguments ...
_FUNCTIONAL = {
    torch.relu,
    torch.relu_,
    torch.nn.functional.relu,
    torch.nn.functional.relu_,
    torch.nn.functional.relu6,
    torch.Tensor.relu,
    torch.Tensor.relu_,
}
# ... and functions that rectify only for some arguments: each with the test of its arguments.
_CLAMPS = {
    torch.clamp,
    torch.clamp_,
    torch.clip,
    torch.clip_,
    torch.clamp_min,
    torch.clamp_min_,
    torch.Tensor.clamp,
    torch.Tensor.clamp_,
    torch.Tensor.clip,
    torch.Tensor.clip_,
    torch.Tensor.clamp_min,
    torch.Tensor.clamp_min_,
}
_HARDTANH = {torch.nn.functional.hardtanh, torch.nn.functional.hardtanh_}
_LEAKY = {torch.nn.functional.leaky_relu, torch.nn.functional.leaky_relu_}
_THRESHOLD = {torch.nn.functional.threshold, torch.nn.functional.threshold_, torch.threshold}
_MAXIMUM = {
    torch.maximum,
    torch.max,
    torch.fmax,
    torch.Tensor.maximum,
    torch.Tensor.max,
    torch.Tensor.fmax,
}


def _arg(args: tuple, kwargs: dict, i: int, name: str, default: Any = None) -> Any:
    return kwargs.get(name, args[i] if len(args) > i else default)


def _is_zero(v: Any) -> bool:
    """A number 0, or a tensor of zeros (a rectifier's other operand; reading it syncs a GPU, but
    only for the rare clamp or maximum with a tensor operand)."""
    if isinstance(v, torch.Tensor):
        return v.dtype != torch.bool and v.numel() > 0 and not bool(v.any())
    return isinstance(v, int | float) and not isinstance(v, bool) and v == 0


def _rectifies(func: Any, args: tuple, kwargs: dict) -> bool:
    """Whether this call is a rectifier (max(x, 0), possibly capped), from its arguments."""
    if func in _FUNCTIONAL:
        return True
    if func in _CLAMPS:
        return _is_zero(_arg(args, kwargs, 1, "min"))
    if func in _HARDTANH:  # hardtanh(x, min_val=-1, max_val=1): a rectifier when min_val is 0
        return _is_zero(_arg(args, kwargs, 1, "min_val", -1.0))
    if func in _LEAKY:  # leaky_relu(x, negative_slope=0.01): a ReLU when the slope is 0
        return _is_zero(_arg(args, kwargs, 1, "negative_slope", 0.01))
    if func in _THRESHOLD:  # threshold(x, t, v) = x where x > t else v: ReLU when t = v = 0
        return _is_zero(_arg(args, kwargs, 1, "threshold", 1.0)) and _is_zero(
            _arg(args, kwargs, 2, "value", 1.0)
        )
    if func in _MAXIMUM:  # maximum(x, 0): either operand a zero tensor (max(x, dim) is a reduction)
        a, b = _arg(args, kwargs, 0, "input"), _arg(args, kwargs, 1, "other")
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and (_is_zero(b) or _is_zero(a))
        )
    return False


# Models whose forward pass was watched and found to apply no rectifier as a function, with their
# forward function and the rectifier modules they had then: the watch (a Python call per tensor
# operation, about a tenth of a batch-1 forward on a GPU) runs again only when those change.
_CLEAN: WeakKeyDictionary[nn.Module, tuple[int, ...]] = WeakKeyDictionary()


class _Watch(TorchFunctionMode):
    def __init__(self, owner: RectifierRules) -> None:
        super().__init__()
        self.owner = owner

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.owner._depth == 0 and _rectifies(func, args, kwargs):
            self.owner.functional.append(getattr(func, "__name__", str(func)))
        return func(*args, **kwargs)


class RectifierRules:
    """Within ``with RectifierRules(model, rule):`` rectifier modules pass gradients by ``rule``.

    Attributes:
        rule: ``"plain"``, ``"guided"`` or ``"deconvnet"``; plain and guided may be swapped between
            backward passes (the deconvnet rule is fixed at construction, unless ``robust``).
        robust: every rule through an autograd function of the rectifier's kept input, with its
            mask saved (one more pass over each activation): for models that modify a
            rectifier's output in place afterwards (``x = relu(x); x += y``), whose own backward
            autograd then refuses.
        modules: the rectifier modules found (name -> module).
        functional: names of rectifier functions called outside rectifier modules in the forward
            passes so far; :meth:`check` raises if there are any.
    """

    def __init__(
        self,
        model: nn.Module,
        rule: str = "guided",
        method: str = "this method",
        robust: bool = False,
    ) -> None:
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}; use one of {', '.join(RULES)}")
        from convscope.core.recorder import check_hookable

        check_hookable(model, method)  # not "has no rectifiers": TorchScript hides its modules
        self.model, self.method = model, method
        self._rule = rule
        self.robust = robust
        self.modules = {n: m for n, m in model.named_modules() if n and active_range(m)}
        if not self.modules:
            raise MethodError(
                f"{method} needs rectifier modules (nn.ReLU, nn.ReLU6) and "
                f"{type(model).__name__} has none"
            )
        self.functional: list[str] = []
        # the graph: outputs replaced (deconvnet, or robust for every rule), or tensor hooks
        self._replace = robust or rule == "deconvnet"
        self._depth = 0
        self._inputs: dict[int, list[torch.Tensor]] = {}
        self._handles: list[Any] = []
        self._watch = _Watch(self)
        forward = model.__dict__.get("forward", type(model).forward)  # a patched forward too
        self._key = (id(forward), *(id(m) for m in self.modules.values()))
        self._watching = _CLEAN.get(model) != self._key

    @property
    def rule(self) -> str:
        return self._rule

    @rule.setter
    def rule(self, rule: str) -> None:
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}; use one of {', '.join(RULES)}")
        if not self.robust and "deconvnet" in (rule, self._rule) and rule != self._rule:
            raise ValueError(
                "the deconvnet rule builds another graph: choose it (or robust=True) at the start"
            )
        self._rule = rule

    def __enter__(self) -> RectifierRules:
        try:
            for m in self.modules.values():
                self._handles.append(m.register_forward_pre_hook(self._pre))
                self._handles.append(m.register_forward_hook(self._post))
            if self._watching:
                self._watch.__enter__()
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._watching:
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
        if not self._replace:
            return None
        x = args[0]
        self._inputs.setdefault(id(module), []).append(x)
        if getattr(module, "inplace", False):
            return (x.clone(),) + tuple(args[1:])  # the module's in-place op must not touch x
        return None

    def _post(self, module: nn.Module, args: tuple, output: torch.Tensor) -> Any:
        try:
            if self._replace:
                x = self._inputs[id(module)].pop()
                lo, hi = active_range(module)
                if self.robust:
                    return _Rule.apply(x, lo, hi, self)
                return _Deconv.apply(x, lo, hi)
            if output.requires_grad:
                output.register_hook(self._guide)
            return None
        finally:
            self._depth -= 1

    def _guide(self, g: torch.Tensor) -> torch.Tensor | None:
        """The gradient arriving at a rectifier's output; its own backward masks it next."""
        return g.clamp(min=0) if self._rule == "guided" else None

    def check(self) -> None:
        """Raise MethodError if a functional rectifier ran outside rectifier modules. A model
        found clean is not watched again while its rectifier modules stay the same."""
        if not self.functional and self._watching:
            _CLEAN[self.model] = self._key
        if self.functional:
            names = sorted(set(self.functional))
            raise MethodError(
                f"{self.method} cannot rewrite rectifiers applied as functions ({', '.join(names)}: "
                f"{len(self.functional)} call(s) outside nn.ReLU/nn.ReLU6 modules); its map would "
                "silently mix in plain gradients; use rectifier modules in the model"
            )
