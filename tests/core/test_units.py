"""The unit selector: parsing, range checks against a layer's shape, and values by hand."""

from __future__ import annotations

import pytest
import torch

from convscope.core.units import Unit, parse_unit, resolve_unit
from convscope.errors import LayerError
from tests.models import TinyCNN


@pytest.mark.parametrize(
    ("spec", "unit", "kind"),
    [
        ("conv1", Unit("conv1"), "layer"),
        ("conv1:3", Unit("conv1", 3), "channel"),
        ("conv1:3:2:5", Unit("conv1", 3, (2, 5)), "neuron"),
        ("act@1:0", Unit("act@1", 0), "channel"),
        (" _blocks.10 : 5 ", Unit("_blocks.10", 5), "channel"),
    ],
)
def test_parse_round_trips(spec, unit, kind):
    got = parse_unit(spec)
    assert got == unit and got.kind == kind
    assert parse_unit(got.spec) == got and str(got) == got.spec


@pytest.mark.parametrize(
    "spec", ["", ":3", "conv1:", "conv1:a", "conv1:1:2", "conv1:-1", "a:1:2:3:4"]
)
def test_parse_refuses_bad_syntax_with_the_grammar(spec):
    with pytest.raises(LayerError, match="LAYER:K:I:J"):
        parse_unit(spec)


def test_constructor_validates():
    with pytest.raises(LayerError):
        Unit("x", -1)
    with pytest.raises(LayerError):
        Unit("x", None, (1, 2))
    with pytest.raises(LayerError):
        Unit("x", 1, (1,))
    assert Unit("x", 1, [2, 3]).position == (2, 3)


def test_resolve_names_closest_layers():
    model = TinyCNN()
    unit, ref = resolve_unit(model, "conv2:1")
    assert ref.module is model.conv2 and unit.channel == 1
    with pytest.raises(LayerError, match="did you mean: conv2"):
        resolve_unit(model, "conv22:1")


def test_values_by_hand():
    a = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    assert torch.equal(Unit("l", 1).value(a), torch.tensor([5.5, 17.5]))
    assert torch.equal(Unit("l", 2, (1, 0)).value(a), torch.tensor([10.0, 22.0]))
    assert Unit("l").value(a) is a
    flat = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert torch.equal(Unit("l", 1).value(flat), torch.tensor([2.0, 4.0]))


def test_out_of_range_units_say_the_valid_range():
    a = torch.zeros(1, 3, 4, 5)
    with pytest.raises(LayerError, match="3 channels"):
        Unit("l", 3).value(a)
    with pytest.raises(LayerError, match="4x5"):
        Unit("l", 0, (4, 0)).value(a)
    with pytest.raises(LayerError, match="4-D"):
        Unit("l", 0, (0, 0)).value(torch.zeros(1, 3))
    with pytest.raises(LayerError, match="shape"):
        Unit("l", 0).value(torch.zeros(3))
