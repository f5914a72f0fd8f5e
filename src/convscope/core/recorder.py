"""The recorder: the one place where convscope hooks into a model.

A :class:`Recorder` captures, for one batched forward pass, the output of each chosen module *at
every call* (EfficientNet-Lite0 calls one ReLU6 module several times per block), and gives
gradients of any score with respect to those outputs through :func:`torch.autograd.grad` on the
captured tensors, so no full backward hooks are needed and the backward pass stops at the deepest
layer it must reach.

Each hook hands a clone of the output to the rest of the network, so a later in-place operation
(``nn.ReLU(inplace=True)``, ``x += y``) changes the clone, never the recorded tensor. With
``reduce`` the hook keeps only ``reduce(name, k, output)`` (a summary computed at once, before any
later operation can change the output), clones nothing and holds no activation: statistics over
every layer stream in constant memory. Hooks are removed on exit, whatever happened inside.

With ``stop=True`` the forward pass ends as soon as every call asked for has been recorded (the
hook raises a private exception that :meth:`Recorder.forward` catches): a method that reads a
middle layer and not the output (a channel's feature visualization) pays only for the network up
to that layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from convscope.core.layers import LayerRef, resolve_layer
from convscope.errors import LayerError, MethodError

__all__ = ["Recorder", "check_hookable", "is_torchscript"]


def is_torchscript(model: nn.Module) -> bool:
    """Whether ``model`` is a TorchScript module (``torch.jit.script`` or ``torch.jit.trace``)."""
    return isinstance(model, torch.jit.ScriptModule)


def check_hookable(model: nn.Module, what: str) -> None:
    """Raise :class:`~convscope.errors.MethodError` when ``model`` cannot take module hooks:
    TorchScript modules refuse ``register_forward_hook``, so nothing that observes or rewrites a
    layer (layer methods, the rectifier rules, layer shapes) can run on them."""
    if is_torchscript(model):
        raise MethodError(
            f"{what} needs hooks on the model's layers, which TorchScript models do not support; "
            "on a TorchScript model use saliency, smoothgrad, integrated_gradients or occlusion, "
            "or give convscope the nn.Module itself"
        )


class Recorder:
    """Record the outputs of ``layers`` (and optionally make them differentiable) during forwards.

    Args:
        model: the model to observe; it is not changed.
        layers: layer names (``"features.3"``, ``"_swish@1"``), :class:`LayerRef` or modules;
            or ``"all"`` for every submodule (then only shapes are kept).
        gradients: when True each recorded output is part of the autograd graph, so
            :meth:`grad` can differentiate a score with respect to it; a layer whose output does
            not require grad (frozen weights, input without grad) is turned into a leaf that does.
        reduce: ``fn(name, k, output) -> value`` (``k``: the module's call number in this pass):
            keep ``value`` instead of the output, in ``calls[name][k]``. The output is neither
            cloned nor kept.
        stop: end each forward pass once every asked call of every layer is recorded; run the
            model with :meth:`forward`, which then returns None instead of the output. A layer
            named without ``@k`` counts as recorded at its first call. Not with ``reduce``.

    Use::

        with Recorder(model, ["layer4"], gradients=True) as rec:
            out = model(x)
            acts = rec.activation("layer4")
            (g,) = rec.grad(out[:, 3].sum(), [acts])
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str | LayerRef | nn.Module] | str,
        *,
        gradients: bool = False,
        reduce: Callable[[str, int, Any], Any] | None = None,
        stop: bool = False,
    ) -> None:
        self.model = model
        self.gradients = gradients
        self.reduce = reduce
        self.stop = stop and layers != "all" and reduce is None
        self.shapes_only = layers == "all"
        if self.shapes_only:
            self.refs = [LayerRef(n, m, None) for n, m in model.named_modules() if n]
        else:
            items = [layers] if isinstance(layers, str | LayerRef | nn.Module) else layers
            self.refs = [resolve_layer(model, item) for item in items]
        self.calls: dict[str, list[Any]] = {}
        self.order: list[tuple[str, int]] = []
        self._handles: list[Any] = []
        # Which calls of each module to keep: None keeps every call. Calls not asked for (the stem
        # call of a ReLU6 reused in the head, say) are counted but neither kept nor cloned.
        self._wanted: dict[str, set[int] | None] = {}
        for ref in self.refs:
            if ref.call is None or self._wanted.get(ref.name, set()) is None:
                self._wanted[ref.name] = None
            else:
                self._wanted.setdefault(ref.name, set()).add(ref.call)

    # -- context -------------------------------------------------------------------------------
    def __enter__(self) -> Recorder:
        check_hookable(self.model, "recording layer outputs")
        try:
            for ref in self.refs:
                if ref.name in self.calls:
                    continue
                self.calls[ref.name] = []
                if self.shapes_only:
                    hook = self._shape_hook(ref.name)
                elif self.reduce is not None:
                    hook = self._reduce_hook(ref.name)
                else:
                    hook = self._hook(ref.name)
                self._handles.append(ref.module.register_forward_hook(hook))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove every hook this recorder added (idempotent)."""
        while self._handles:
            self._handles.pop().remove()

    def _complete(self) -> bool:
        return all(len(self.calls[r.name]) > (r.call or 0) for r in self.refs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """``model(*args, **kwargs)`` with the hooks in place; None when ``stop`` ended the pass
        after the last layer asked for."""
        try:
            return self.model(*args, **kwargs)
        except _StopForward:
            return None

    def clear(self) -> None:
        """Forget what was recorded (keep the hooks), e.g. between two forward passes."""
        for v in self.calls.values():
            v.clear()
        self.order.clear()

    # -- hooks ---------------------------------------------------------------------------------
    def _hook(self, name: str):
        wanted = self._wanted.get(name)

        def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
            if wanted is not None and len(self.calls[name]) not in wanted:
                self.calls[name].append(_SKIPPED)
                self.order.append((name, len(self.calls[name]) - 1))
                return None
            if not isinstance(output, torch.Tensor):
                self.calls[name].append(output)
                self.order.append((name, len(self.calls[name]) - 1))
                return None
            if self.gradients and torch.is_grad_enabled() and not output.requires_grad:
                output = output.detach().requires_grad_(True)
            self.calls[name].append(output)
            self.order.append((name, len(self.calls[name]) - 1))
            if self.stop and self._complete():
                raise _StopForward
            # Downstream gets a copy: in-place operations after this point leave the record intact.
            return output.clone()

        return hook

    def _reduce_hook(self, name: str):
        wanted = self._wanted.get(name)
        reduce = self.reduce
        assert reduce is not None

        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            calls = self.calls[name]
            k = len(calls)
            calls.append(
                _SKIPPED if wanted is not None and k not in wanted else reduce(name, k, output)
            )
            self.order.append((name, k))

        return hook

    def _shape_hook(self, name: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            self.calls[name].append(_shape_of(output))
            self.order.append((name, len(self.calls[name]) - 1))

        return hook

    # -- access --------------------------------------------------------------------------------
    def activation(self, layer: str | LayerRef | nn.Module) -> torch.Tensor:
        """The recorded output of ``layer`` (at its call ``@k`` when the module runs several times)."""
        ref = layer if isinstance(layer, LayerRef) else resolve_layer(self.model, layer)
        calls = self.calls.get(ref.name)
        if calls is None:
            raise LayerError(f"layer {ref.spec!r} is not being recorded")
        if not calls:
            raise LayerError(
                f"layer {ref.spec!r} did not run in the forward pass (it is defined but unused)"
            )
        if ref.call is None:
            if len(calls) > 1:
                options = ", ".join(f"{ref.name}@{i}" for i in range(len(calls)))
                raise LayerError(
                    f"layer {ref.name!r} runs {len(calls)} times in one forward pass; "
                    f"name one call: {options}"
                )
            out = calls[0]
        else:
            if ref.call >= len(calls):
                raise LayerError(
                    f"layer {ref.name!r} runs {len(calls)} time(s) per forward pass; "
                    f"call @{ref.call} does not exist"
                )
            out = calls[ref.call]
        if out is _SKIPPED:
            raise LayerError(
                f"layer {ref.spec!r} ran but was not recorded; give it to the Recorder"
            )
        if not isinstance(out, torch.Tensor):
            raise LayerError(
                f"layer {ref.spec!r} returns {type(out).__name__}, not a tensor; pick another layer"
            )
        return out

    def activations(self) -> dict[str, torch.Tensor]:
        """Every recorded tensor, keyed by ``name`` (or ``name@k`` for modules run several times)."""
        out: dict[str, torch.Tensor] = {}
        for name, calls in self.calls.items():
            for i, value in enumerate(calls):
                if isinstance(value, torch.Tensor) and value is not _SKIPPED:
                    out[name if len(calls) == 1 else f"{name}@{i}"] = value
        return out

    @staticmethod
    def grad(score: torch.Tensor, tensors: Iterable[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """d(score)/d(tensor) for each tensor, by :func:`torch.autograd.grad` (no .grad touched)."""
        tensors = tuple(tensors)
        for t in tensors:
            if not t.requires_grad:
                raise RuntimeError("recorded tensor has no gradient; use Recorder(gradients=True)")
        return torch.autograd.grad(score, tensors, allow_unused=False)


_SKIPPED = object()  # placeholder for a call that ran but was not asked for


class _StopForward(BaseException):
    """Raised by a hook to end a forward pass early (a BaseException, so that a model's own
    ``except Exception`` does not swallow it)."""


def _shape_of(output: Any) -> Any:
    if isinstance(output, torch.Tensor):
        return tuple(output.shape)
    if isinstance(output, list | tuple):
        return tuple(_shape_of(o) for o in output)
    return type(output).__name__
