"""Running a model from one layer onwards: :class:`Tail`.

Methods that perturb a layer's activations many times (ablation-CAM) only need the network after
that layer. :class:`Tail` builds that part with :mod:`torch.fx` when the model traces: the graph is
cut at the layer's call, and every value the rest of the graph needs from before the cut (a
residual input, a shape) is captured once from a forward pass of the real batch. The split is
checked against the full model's output on that batch; when tracing fails or the check does not
hold, :class:`Tail` falls back to full forward passes with the layer's output substituted through a
hook (same answer, more work). Either way the user's model is not changed: the traced graph only
refers to the model's own modules.

A tail takes activations for the batch it was built on, or for ``m`` whole copies of it (row
``j * N + i`` belongs to image ``i``), so that many perturbed activations run in one pass; the
values captured from before the layer are repeated to match (checked once, on three copies of which
the middle one differs, so that a tail that depends on the batch size in another way, e.g.
``x.view(x.size(0), -1)`` with a size captured from before the layer that is not the batch size,
or that pools over the rows of its input, takes one copy per call). The activation passed in is never modified, also when
the layers after it work in place.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import fx, nn

from convscope.core.layers import LayerRef
from convscope.core.outputs import selected

__all__ = ["Tail", "substitute"]


@contextlib.contextmanager
def substitute(model: nn.Module, ref: LayerRef, value: torch.Tensor) -> Iterator[None]:
    """Within the block, the output of ``ref`` (its call ``@k``; its only call if None) is
    replaced by ``value`` in every forward pass. The hook is removed on exit."""
    count = [0]
    target = ref.call or 0

    def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
        k = count[0]
        count[0] += 1
        return value if k == target else None

    def reset(module: nn.Module, args: Any) -> None:
        count[0] = 0

    handles = [ref.module.register_forward_hook(hook), model.register_forward_pre_hook(reset)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


class _LeafTracer(fx.Tracer):
    def __init__(self, leaf: nn.Module) -> None:
        super().__init__()
        self.leaf = leaf

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return m is self.leaf or super().is_leaf_module(m, qualname)


class Tail:
    """``tail(activation) -> model output`` for the part of ``model`` after layer ``ref``.

    Args:
        model: the model (in the mode it should run in, normally eval).
        ref: the layer; its output on ``x`` is where the tail starts.
        x: the input batch; values the tail needs from before the layer are taken from it.
        output: the model's output on ``x``, when the caller has it (saves a forward pass); it is
            what the tail is checked against.

    Attributes:
        split: True when the tail is a traced sub-graph (only the layers after ``ref`` run),
            False when each call runs the whole model with the activation substituted.
        activation: the layer's output on ``x``.
        output: the model's output on ``x``.
    """

    def __init__(
        self,
        model: nn.Module,
        ref: LayerRef,
        x: torch.Tensor,
        output: torch.Tensor | None = None,
    ) -> None:
        self.model, self.ref, self.x = model, ref, x
        self._graph: fx.GraphModule | None = None
        self._captured: list[Any] = []
        self._repeated: dict[int, list[Any]] = {}
        self.batchable = False
        self._given = None if output is None else output.detach()
        with torch.no_grad():
            try:
                self._build()
            except Exception:
                self._graph = None
            if self._graph is None:
                self._fallback_reference()
                # full passes with the activation substituted: checked for copies on their own
                self.batchable = _copies_independent(self._run, self.activation, self.output)
            self.split = self._graph is not None

    # -- construction --------------------------------------------------------------------------
    def _build(self) -> None:
        tracer = _LeafTracer(self.ref.module)
        graph = tracer.trace(self.model)
        gm = fx.GraphModule(tracer.root, graph)
        calls = [n for n in graph.nodes if n.op == "call_module" and n.target == self.ref.name]
        k = self.ref.call or 0
        if len(calls) <= k or (self.ref.call is None and len(calls) != 1):
            return
        cut = calls[k]
        # nodes downstream of the cut
        after: set[fx.Node] = {cut}
        order = list(graph.nodes)
        for n in order[order.index(cut) + 1 :]:
            if any(a in after for a in n.all_input_nodes):
                after.add(n)
        output = next(n for n in order if n.op == "output")
        if output not in after:
            return
        # what the downstream nodes need from before the cut: values computed from the input are
        # captured (placeholders of the tail); values that do not depend on the input (parameters
        # read with get_attr, as in F.conv2d(x, self.weight), and what is computed from them) are
        # recomputed in the tail, so they are not tied to the batch
        from_input: set[fx.Node] = set()
        for n in order:
            if n.op == "placeholder" or any(a in from_input for a in n.all_input_nodes):
                from_input.add(n)
        needed: list[fx.Node] = []
        constant: set[fx.Node] = set()
        stack = [a for n in order if n in after and n is not cut for a in n.all_input_nodes]
        while stack:
            a = stack.pop()
            if a in after or a in constant or a in needed:
                continue
            if a in from_input:
                needed.append(a)
            else:
                constant.add(a)
                stack.extend(a.all_input_nodes)
        needed.sort(key=order.index)
        # one forward through the traced graph captures the cut's value and the needed values
        env: dict[fx.Node, Any] = {}

        class Capture(fx.Interpreter):
            def run_node(self, n: fx.Node) -> Any:
                value = super().run_node(n)
                if n is cut or n in needed:
                    env[n] = value
                return value

        # (a traced graph bypasses model.__call__: the output selector is applied here)
        full = selected(self.model, Capture(gm).run(self.x))
        # the tail graph: placeholders for the cut and the needed values, then the downstream nodes
        tail = fx.Graph()
        remap: dict[fx.Node, fx.Node] = {cut: tail.placeholder("activation")}
        for i, n in enumerate(needed):
            remap[n] = tail.placeholder(f"captured_{i}")
        for n in order:
            if (n in after and n is not cut) or n in constant:
                remap[n] = tail.node_copy(n, lambda a: remap[a])
        tail_gm = fx.GraphModule(tracer.root, tail)
        self._captured = [env[n] for n in needed]
        self.activation = env[cut]
        self.output = self.model(self.x) if self._given is None else self._given
        if not _same(full, self.output):
            return
        # one check of the tail on copies of the batch (then copies share calls); else on the
        # batch alone, and the graph is kept for one copy per call
        n = self.activation.shape[0]
        if all(_batchable(c, n) for c in self._captured):

            def copies(a: torch.Tensor, k: int) -> Any:
                return selected(self.model, tail_gm(a, *[_repeat(c, k, n) for c in self._captured]))

            if _copies_independent(copies, self.activation, self.output):
                self._graph, self.batchable = tail_gm, True
                return
        check = selected(
            self.model, tail_gm(self.activation.clone(), *[_fresh(c) for c in self._captured])
        )
        if _same(check, self.output):
            self._graph = tail_gm

    def _fallback_reference(self) -> None:
        from convscope.core.recorder import Recorder

        with Recorder(self.model, [self.ref]) as rec:
            self.output = self.model(self.x)
        self.activation = rec.activation(self.ref)

    # -- use -----------------------------------------------------------------------------------
    def __call__(self, activation: torch.Tensor, donate: bool = False) -> torch.Tensor:
        """The model's output for ``activation`` at the layer (the batch's, or ``m`` whole copies
        of it). ``donate``: the caller will not read ``activation`` again, so the layers after
        it may work on it in place (no copy is made)."""
        n = self.activation.shape[0]
        rows = activation.shape[0]
        copies, rest = divmod(rows, n)
        if activation.shape[1:] != self.activation.shape[1:] or rest or not copies:
            raise ValueError(
                f"a tail takes activations of shape {tuple(self.activation.shape)} (or whole "
                f"copies of that batch), got {tuple(activation.shape)}"
            )
        if copies > 1 and not self.batchable:
            return torch.cat([self(part, donate) for part in activation.split(n)])
        return self._run(activation if donate else activation.clone(), copies)

    def _run(self, activation: torch.Tensor, copies: int) -> torch.Tensor:
        """The tail on ``activation``, which the layers after it may modify in place."""
        if self._graph is not None:
            if copies not in self._repeated:
                n = self.activation.shape[0]
                self._repeated = {copies: [_repeat(c, copies, n) for c in self._captured]}
            captured = [_fresh(c) for c in self._repeated[copies]]
            return selected(self.model, self._graph(activation, *captured))
        with substitute(self.model, self.ref, activation):
            return self.model(_repeat(self.x, copies, self.x.shape[0]))


def _repeat(t: Any, copies: int, n: int) -> Any:
    """A captured value for ``copies`` copies of the ``n``-image batch: tensors are repeated along
    the batch axis, the batch size itself (an int, as in ``x.view(x.size(0), -1)``) is scaled."""
    if copies == 1:
        return t
    if isinstance(t, torch.Tensor):
        return t.repeat(copies, *[1] * (t.ndim - 1))
    return t * copies if isinstance(t, int) and t == n else t


def _copies_independent(run: Any, activation: torch.Tensor, output: torch.Tensor) -> bool:
    """True when ``run(3 copies, 3)`` gives the batch's output for copies 1 and 3 while copy 2 is
    another activation (half of it): the tail takes whole copies of the batch in one call, and
    no copy changes another's result (as a tail that pools over the rows of its input would)."""
    n = activation.shape[0]
    try:
        three = run(torch.cat([activation, activation * 0.5, activation]), 3)
    except Exception:  # a tail that cannot take copies (e.g. sizes captured from the batch)
        return False
    return _same(three[:n], output) and _same(three[2 * n :], output)


def _batchable(t: Any, n: int) -> bool:
    """A captured value that :func:`_repeat` can extend to copies of the ``n``-image batch."""
    return isinstance(t, int) or (isinstance(t, torch.Tensor) and t.ndim > 0 and t.shape[0] == n)


def _fresh(t: Any) -> Any:
    return t.clone() if isinstance(t, torch.Tensor) else t


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        scale = b.detach().abs().max().clamp_min(1e-12)
        return a.shape == b.shape and bool(((a - b).abs().max() / scale) < 1e-5)
    return False
