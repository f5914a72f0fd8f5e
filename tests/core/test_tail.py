"""Running a model from a layer onwards (core.tail.Tail)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convscope.core.guard import fingerprints_equal, model_fingerprint, preserved
from convscope.core.layers import resolve_layer
from convscope.core.tail import Tail, substitute
from tests.models import TinyCNN, tiny_input


def _brute_force(model, spec, x, activation):
    with torch.no_grad(), substitute(model, resolve_layer(model, spec), activation):
        return model(x)


@pytest.mark.parametrize("spec", ["conv1", "act@0", "conv2", "act@1", "relu6"])
def test_tail_equals_full_forward_with_substituted_activation(spec):
    model = TinyCNN().eval()
    x = tiny_input(3)
    before = model_fingerprint(model)
    tail = Tail(model, resolve_layer(model, spec), x)
    assert tail.split
    torch.testing.assert_close(tail.output, model(x))
    a = tail.activation.clone()
    a[:, 1] = 0
    a[0] *= 2
    with torch.no_grad():
        torch.testing.assert_close(tail(a), _brute_force(model, spec, x, a))
    assert fingerprints_equal(before, model_fingerprint(model))


class Residual(nn.Module):
    """The tail needs a value from before the cut (the skip connection) and a shape."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 3, 1)
        self.b = nn.Conv2d(3, 3, 1)
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        h = self.a(x)
        y = self.b(h) + x
        return self.fc(y.view(x.size(0), 3, -1).mean(-1))


def test_tail_captures_skip_connections():
    model = Residual().eval()
    x = tiny_input(2, 8)
    tail = Tail(model, resolve_layer(model, "b"), x)
    assert tail.split
    a = torch.randn_like(tail.activation)
    with torch.no_grad():
        torch.testing.assert_close(tail(a), _brute_force(model, "b", x, a))


class Untraceable(nn.Module):
    """Data-dependent control flow: fx cannot trace it, so the tail falls back."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        h = self.conv(x)
        if h.sum() > 1e9:
            h = h * 2
        return self.fc(h.mean((2, 3)))


def test_untraceable_model_falls_back_to_full_forwards():
    model = Untraceable().eval()
    x = tiny_input(2, 8)
    with preserved(model):
        tail = Tail(model, resolve_layer(model, "conv"), x)
    assert not tail.split
    a = torch.randn_like(tail.activation)
    with torch.no_grad():
        torch.testing.assert_close(tail(a), _brute_force(model, "conv", x, a))
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    with pytest.raises(ValueError, match="takes activations of shape"):
        tail(a[:1])


def test_lite0_tail_at_the_head(lite0):
    x = tiny_input(2, 224)
    with preserved(lite0.model):
        tail = Tail(lite0.model, resolve_layer(lite0.model, "_swish@1"), x)
        assert tail.split
        a = tail.activation.clone()
        a[:, :100] = 0
        with torch.no_grad():
            torch.testing.assert_close(
                tail(a), _brute_force(lite0.model, "_swish@1", x, a), rtol=1e-4, atol=1e-4
            )


class SizeBaked(nn.Module):
    """The tail reshapes by a captured size that is not the batch size alone (N * 3): copies of
    the batch cannot share one call, and the tail must find that out."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 3, 1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        rows = x.size(0) * x.size(1)
        h = self.a(x)
        return self.fc(h.reshape(rows, -1)[:, :4]).reshape(x.size(0), -1)


class FunctionalWeights(nn.Module):
    """After the layer, a convolution by F.conv2d with the module's own weight (as
    EfficientNet-Lite0's same-padding convolutions): the tail reads the weight itself, it is not
    a value captured from the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.w = nn.Parameter(torch.randn(5, 4, 3, 3, generator=torch.Generator().manual_seed(1)))
        self.fc = nn.Linear(5, 2)

    def forward(self, x):
        h = torch.nn.functional.conv2d(self.a(x), self.w * 0.5, padding=1)
        return self.fc(h.mean(dim=(2, 3)))


def test_parameters_read_after_the_layer_are_not_captured():
    model = FunctionalWeights().eval()
    tail = Tail(model, resolve_layer(model, "a"), tiny_input(2, 8))
    assert tail.split and tail.batchable and tail._captured == []
    with torch.no_grad():
        model.w.mul_(2)  # the tail reads the live weight
        a = tail.activation.repeat(3, 1, 1, 1)
        torch.testing.assert_close(
            tail(a), _brute_force(model, "a", tiny_input(2, 8), tail.activation).repeat(3, 1)
        )


class PoolsOverRows(nn.Module):
    """After the layer, each row is centred on the batch mean: copies of the batch in one call
    would change each other's results, so they must not share a call."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        h = self.a(x)
        return self.fc((h - h.mean(dim=0, keepdim=True)).mean(dim=(2, 3)))


class ChannelStatistic(nn.Module):
    """A per-channel statistic of the input, captured from before the layer, whose length equals
    the batch size by chance (3 channels, 3 images): not a per-image value."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 3, 1)
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        m = x.mean(dim=(0, 2, 3))
        return self.fc((self.a(x) * m[:, None, None]).mean(dim=(2, 3)))


@pytest.mark.parametrize("model", [PoolsOverRows(), ChannelStatistic()])
def test_tails_that_cannot_take_copies_run_one_copy_per_call(model):
    model.eval()
    x = tiny_input(3, 8)
    tail = Tail(model, resolve_layer(model, "a"), x)
    assert tail.split and not tail.batchable
    a = torch.randn((2, *tail.activation.shape), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = tail(a.flatten(0, 1))
        want = torch.cat([_brute_force(model, "a", x, part) for part in a])
    torch.testing.assert_close(got, want)


def test_lite0_tails_are_batchable(lite0):
    """Lite0's convolutions read their weights through F.conv2d: none is captured, and copies of
    the batch share a call at every depth."""
    x = tiny_input(2, 224)
    with preserved(lite0.model):
        for spec in ("_blocks.0._swish", "_blocks.4", "_blocks.10"):
            tail = Tail(lite0.model, resolve_layer(lite0.model, spec), x)
            assert tail.split and tail.batchable, spec
            assert not any(isinstance(c, torch.Tensor) for c in tail._captured), spec


@pytest.mark.parametrize(
    "model, spec",
    [
        (TinyCNN(), "conv2"),
        (TinyCNN(), "relu6"),
        (Residual(), "b"),
        (SizeBaked(), "a"),
        (FunctionalWeights(), "a"),
    ],
)
def test_tail_runs_copies_of_the_batch_in_one_call(model, spec):
    model.eval()
    x = tiny_input(2, 8)
    tail = Tail(model, resolve_layer(model, spec), x)
    assert tail.split
    assert tail.batchable == (not isinstance(model, SizeBaked))
    a = torch.randn((3, *tail.activation.shape), generator=torch.Generator().manual_seed(0))
    rows = a.flatten(0, 1)  # row j * N + i: copy j of image i
    kept = rows.clone()
    with torch.no_grad():
        got = tail(rows)
        want = torch.cat([_brute_force(model, spec, x, part) for part in a.clone()])
    torch.testing.assert_close(got, want)
    assert torch.equal(rows, kept)  # conv2 is followed by an in-place ReLU
    with pytest.raises(ValueError, match="whole copies"):
        tail(rows[:3])


def test_tail_does_not_modify_the_activation_it_is_given():
    model = TinyCNN().eval()
    x = tiny_input(2)
    tail = Tail(model, resolve_layer(model, "conv2"), x)  # then ReLU(inplace=True)
    a = tail.activation.clone() - 1.0
    kept = a.clone()
    with torch.no_grad():
        out = tail(a)
        torch.testing.assert_close(out, _brute_force(model, "conv2", x, kept.clone()))
    assert torch.equal(a, kept)
    torch.testing.assert_close(tail(tail.activation), model(x))  # kept intact by the check run
