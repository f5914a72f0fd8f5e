"""How structured are a layer's filters? Two statistics of each filter's 2-D power spectrum.

A freshly initialized filter is white noise: its power is spread evenly over all frequencies and
orientations. Trained first-layer filters of image models are oriented edges and gratings (Gabor-
like: the power sits at one orientation) and smooth colour blobs (the power sits at low
frequencies) — Krizhevsky et al. 2012, figure 3; Zeiler & Fergus 2014.

For a filter :math:`w` of shape (C, k, k), with :math:`P(f) = \\sum_c |\\mathcal{F}[w_c - \\bar w_c](f)|^2`
on a zero-padded grid (the channel means removed, so a flat colour does not count as structure):

- **orientation index** :math:`|\\sum_f P(f) e^{2i\\theta_f}| / \\sum_f P(f)` over the non-zero
  frequencies :math:`f`, :math:`\\theta_f` their angle: 1 for a grating or a straight edge, near 0
  for noise or round blobs (the doubled angle treats :math:`\\theta` and :math:`\\theta + \\pi` as one
  orientation). A filter has a *dominant orientation* when its index is at least ``threshold``.
- **low-frequency fraction**: the share of :math:`P` (channel means kept) at frequencies
  :math:`|f| \\le` ``cutoff`` cycles per pixel; white noise puts about
  :math:`\\pi \\cdot \\mathrm{cutoff}^2` there (0.07 for 0.15), smooth filters most of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from convscope.errors import ConvscopeError

__all__ = ["FilterStructure", "filter_structure"]


@dataclass
class FilterStructure:
    """Per-filter statistics and the layer's summary.

    Attributes:
        orientation: (K,) orientation index in [0, 1].
        low_frequency: (K,) share of power at low frequencies in [0, 1].
        oriented_fraction: share of filters with ``orientation >= threshold``.
        mean_low_frequency: the mean of ``low_frequency``.
    """

    orientation: torch.Tensor
    low_frequency: torch.Tensor
    oriented_fraction: float
    mean_low_frequency: float


def filter_structure(
    weight: torch.Tensor, threshold: float = 0.4, cutoff: float = 0.15, pad: int = 32
) -> FilterStructure:
    """Orientation index and low-frequency fraction of each filter of ``weight`` (K, C, k, k)."""
    w = torch.as_tensor(weight).detach().double()
    if w.ndim != 4 or w.shape[-1] < 3 or w.shape[-2] < 3:
        raise ConvscopeError(f"weight must be (K, C, k, k) with k >= 3; got {tuple(w.shape)}")
    size = max(pad, w.shape[-1], w.shape[-2])
    fy = torch.fft.fftfreq(size, dtype=torch.float64).view(-1, 1)
    fx = torch.fft.fftfreq(size, dtype=torch.float64).view(1, -1)
    radius = torch.hypot(fy, fx)
    doubled = torch.exp(2j * torch.atan2(fy, fx))
    centred = w - w.mean(dim=(2, 3), keepdim=True)
    power = torch.fft.fft2(centred, s=(size, size)).abs().pow(2).sum(dim=1)  # (K, S, S)
    nonzero = radius > 0
    total = (power * nonzero).sum(dim=(1, 2))
    index = ((power * doubled * nonzero).sum(dim=(1, 2))).abs() / total.clamp_min(1e-300)
    full = torch.fft.fft2(w, s=(size, size)).abs().pow(2).sum(dim=1)
    low = (full * (radius <= cutoff)).sum(dim=(1, 2)) / full.sum(dim=(1, 2)).clamp_min(1e-300)
    index = torch.where(total > 0, index, torch.zeros_like(index)).float()
    low = low.float()
    return FilterStructure(
        orientation=index,
        low_frequency=low,
        oriented_fraction=float((index >= threshold).float().mean()),
        mean_low_frequency=float(low.mean()),
    )
