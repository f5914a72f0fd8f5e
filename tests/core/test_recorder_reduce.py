"""Recorder(reduce=...): a summary per call, computed before later in-place operations, nothing
kept or cloned."""

from __future__ import annotations

import torch

from convscope.core.recorder import Recorder
from tests.models import TinyCNN, tiny_input


def test_reduce_keeps_a_summary_per_call_before_inplace_changes():
    model, x = TinyCNN(), tiny_input(2)
    seen = []

    def total(name, k, out):
        seen.append((name, k))
        return float(out.sum())

    with torch.no_grad(), Recorder(model, ["act", "conv2", "act@1"], reduce=total) as rec:
        out = model(x)
    with torch.no_grad():
        h1 = torch.relu(model.conv1(x))
        c2 = model.conv2(h1)  # rectified in place by relu_inplace right after
        h2 = torch.relu(c2)
    assert seen == [("act", 0), ("conv2", 0), ("act", 1)]
    close = dict(rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(rec.calls["act"][0], float(h1.sum()), **close)
    torch.testing.assert_close(rec.calls["act"][1], float(h2.sum()), **close)
    torch.testing.assert_close(rec.calls["conv2"][0], float(c2.sum()), rtol=1e-5, atol=1e-4)
    assert float(c2.sum()) < float(h2.sum())  # the value is from before the in-place ReLU
    torch.testing.assert_close(out, model(x))  # nothing changed downstream
    assert not any(m._forward_hooks for m in model.modules())


def test_reduce_skips_calls_not_asked_for():
    model, x = TinyCNN(), tiny_input(1)
    with torch.no_grad(), Recorder(model, ["act@1"], reduce=lambda n, k, o: k) as rec:
        model(x)
    from convscope.core.recorder import _SKIPPED

    assert rec.calls["act"] == [_SKIPPED, 1]
