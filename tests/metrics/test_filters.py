"""Filter-structure statistics: exact on filters whose spectrum is known, low on noise."""

from __future__ import annotations

import math

import pytest
import torch

from convscope.errors import ConvscopeError
from convscope.metrics.filters import filter_structure


def test_a_pure_edge_has_orientation_index_one():
    # unpadded (pad=0), every row the same: all power lies on the fy = 0 axis, at angles 0 or pi,
    # so e^{2i theta} = 1 there; zero padding would spread it (a box's sinc along fy)
    edge = torch.tensor([[-1.0, 0.0, 1.0]] * 3).expand(1, 3, 3, 3)
    fs = filter_structure(edge, pad=0)
    assert float(fs.orientation[0]) == pytest.approx(1.0, abs=1e-6)
    rotated = filter_structure(
        edge.transpose(2, 3), pad=0
    )  # a horizontal edge: angles +-pi/2, same index
    assert float(rotated.orientation[0]) == pytest.approx(1.0, abs=1e-6)
    assert fs.oriented_fraction == 1.0


def test_noise_is_unstructured_and_a_blob_is_round_and_smooth():
    g = torch.Generator().manual_seed(0)
    noise = filter_structure(torch.randn(400, 3, 11, 11, generator=g))
    assert float(noise.orientation.mean()) < 0.15
    assert noise.oriented_fraction < 0.05
    # white noise puts the grid's share of frequencies with |f| <= 0.15 at low frequency
    f = torch.fft.fftfreq(32)
    share = float((torch.hypot(f.view(-1, 1), f.view(1, -1)) <= 0.15).float().mean())
    assert noise.mean_low_frequency == pytest.approx(share, abs=0.01)
    c = torch.arange(11.0) - 5
    blob = torch.exp(-(c.view(-1, 1) ** 2 + c.view(1, -1) ** 2) / 8).expand(1, 3, 11, 11)
    fs = filter_structure(blob * torch.tensor([1.0, -1.0, 0.5]).view(1, 3, 1, 1))
    assert float(fs.orientation[0]) < 0.02  # round: no orientation
    assert float(fs.low_frequency[0]) > 0.95


def test_a_gabor_is_oriented_at_any_angle():
    c = torch.arange(11.0) - 5
    y, x = c.view(-1, 1), c.view(1, -1)
    for angle in (0.0, 0.4, 1.0, math.pi / 2):
        u = x * math.cos(angle) + y * math.sin(angle)
        gabor = torch.cos(2 * math.pi * u / 4) * torch.exp(-(x**2 + y**2) / 10)
        fs = filter_structure(gabor.expand(1, 3, 11, 11))
        assert float(fs.orientation[0]) > 0.8, angle


def test_bad_weights_are_refused():
    with pytest.raises(ConvscopeError, match="weight must be"):
        filter_structure(torch.zeros(4, 11, 11))
