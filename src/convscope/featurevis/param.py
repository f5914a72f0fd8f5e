"""Image parameterizations: what the optimizer changes, and how it becomes an image.

Every parameterization holds tensors to optimize (:attr:`ImageParam.params`) and makes from them a
batch of display images in [0, 1], (N, 3, H, W) (:meth:`ImageParam.image`); the bundle's own
preprocessing then turns the image into the model input, so "pixels" always means display pixels.

- :class:`PixelParam` — the pixels themselves (the lecture notes' and Simonyan's, Yosinski's
  version): the variable is the image's deviation from the colour where the model input is 0,
  "zeros" is that mean image; after each step the image is clipped to the valid range.
- :class:`FourierParam` — Lucid's parameterization (Olah et al., *Feature Visualization*, Distill
  2017, "Preconditioning and Parameterization"; Mordvintsev et al., *Differentiable Image
  Parameterizations*, Distill 2018): the image is the inverse real 2-D FFT of a spectrum whose
  frequency ``f`` is scaled by ``1 / max(f, 1/max(H, W))`` (so all frequencies start with about
  the same energy: a natural image's spectrum falls as 1/f), with decorrelated colour and a
  sigmoid to the valid range.

Decorrelated colour: the three channels the optimizer sees are mapped to RGB by
:data:`COLOR_CORRELATION_SQRT`, the square root (via SVD) of the covariance of ImageNet's RGB
pixels, as Lucid computed and published it (``lucid/optvis/param/color.py``,
``color_correlation_svd_sqrt``), with its columns scaled so the largest has norm 1 (Lucid does the
same). A step in the optimizer's channels then moves the colours along ImageNet's principal
colour axes: brightness first, then the two colour-opponent axes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["COLOR_CORRELATION_SQRT", "FourierParam", "ImageParam", "PixelParam", "color_matrix"]

# The square root of ImageNet's RGB covariance (rows: R, G, B), from Lucid's color.py.
COLOR_CORRELATION_SQRT = (
    (0.26, 0.09, 0.02),
    (0.27, 0.00, -0.05),
    (0.27, -0.09, 0.03),
)
# Lucid divides the spatial image by 4 before the sigmoid ("reduces saturation" at the start).
FOURIER_IMAGE_SCALE = 4.0


def color_matrix(device: torch.device | str = "cpu") -> torch.Tensor:
    """(3, 3) ``M``: decorrelated channels ``t`` -> RGB ``M @ t``; the columns of
    :data:`COLOR_CORRELATION_SQRT` scaled so that the largest has norm 1."""
    m = torch.tensor(COLOR_CORRELATION_SQRT, dtype=torch.float64)
    m = m / m.norm(dim=0).max()
    return m.to(device=device, dtype=torch.float32)


class ImageParam:
    """Base class: ``params`` are optimized; :meth:`image` is the (N, 3, H, W) display image."""

    params: list[torch.Tensor]
    pixel_space = False  # whether the pixel operators (blur, clipping, decay) apply

    def image(self) -> torch.Tensor:
        raise NotImplementedError

    def project_(self) -> None:
        """Bring the parameters back to the valid set after a step (in place, no autograd)."""


class PixelParam(ImageParam):
    """Pixels: ``image = center + delta``; ``delta`` (N, 3, H, W) is optimized.

    Args:
        deltas: the initial deviations (N, 3, H, W); ``init_pixels`` makes them.
        center: (3,) the colour where the model input is 0 (display units).
    """

    pixel_space = True

    def __init__(self, deltas: torch.Tensor, center: torch.Tensor) -> None:
        self.center = center.view(1, 3, 1, 1).to(deltas.device, deltas.dtype)
        self.delta = deltas.detach().clone().requires_grad_(True)
        self.params = [self.delta]
        self.project_()

    def image(self) -> torch.Tensor:
        return self.center + self.delta

    def project_(self) -> None:
        with torch.no_grad():
            self.delta.copy_(
                torch.maximum(torch.minimum(self.delta, 1 - self.center), -self.center)
            )

    @staticmethod
    def init(
        shape: tuple[int, int, int],
        generators: Sequence[torch.Generator | None],
        kind: str = "zeros",
        std: float = 10 / 255,
    ) -> torch.Tensor:
        """Initial deviations, one image per generator: zeros (the mean image, the notes' "init to
        zeros"), or ``"random"``: Gaussian noise of standard deviation ``std`` (display units;
        Yosinski et al. start from N(0, 10) on the 0-255 scale)."""
        if kind == "zeros":
            return torch.zeros(len(generators), *shape)
        return torch.stack([torch.randn(shape, generator=g) * std for g in generators])


def _freq_scale(h: int, w: int, decay_power: float) -> torch.Tensor:
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
    f = torch.sqrt(fx**2 + fy**2)
    return (1.0 / torch.clamp(f, min=1.0 / max(h, w)) ** decay_power).float()


class FourierParam(ImageParam):
    """Lucid's Fourier parameterization with (optionally) decorrelated colour.

    ``image = sigmoid(M @ irfft2(S * spectrum, norm="ortho") / 4)`` per pixel, with ``S`` the
    1/f scale and ``M`` :func:`color_matrix` (identity without ``decorrelate``).

    Args:
        spectra: (N, 3, H, W // 2 + 1) complex initial spectra (before scaling), or real with a
            last axis of 2 (real, imaginary); ``init`` makes Lucid's (Gaussian, std 0.01).
        size: (H, W) of the image.
        decorrelate: map the channels through :func:`color_matrix`.
        decay_power: the exponent of the 1/f scale (Lucid: 1).
    """

    def __init__(
        self,
        spectra: torch.Tensor,
        size: tuple[int, int],
        decorrelate: bool = True,
        decay_power: float = 1.0,
    ) -> None:
        h, w = size
        if spectra.is_complex():
            spectra = torch.view_as_real(spectra)
        if tuple(spectra.shape[1:]) != (3, h, w // 2 + 1, 2):
            raise ValueError(f"spectra of shape {tuple(spectra.shape)} do not fit a {h}x{w} image")
        self.size = (h, w)
        self.decorrelate = decorrelate
        self.spectrum = spectra.detach().clone().contiguous().requires_grad_(True)
        self.params = [self.spectrum]
        device = spectra.device
        self.scale = _freq_scale(h, w, decay_power).to(device)
        self.matrix = color_matrix(device) if decorrelate else None

    def pre_sigmoid(self) -> torch.Tensor:
        """The image before the sigmoid (N, 3, H, W)."""
        spec = torch.view_as_complex(self.spectrum) * self.scale
        t = torch.fft.irfft2(spec, s=self.size, norm="ortho") / FOURIER_IMAGE_SCALE
        if self.matrix is not None:
            t = torch.einsum("ij,njhw->nihw", self.matrix, t)
        return t

    def image(self) -> torch.Tensor:
        return torch.sigmoid(self.pre_sigmoid())

    @staticmethod
    def init(
        shape: tuple[int, int, int], generators: Sequence[torch.Generator], std: float = 0.01
    ) -> torch.Tensor:
        """Lucid's initial spectra: Gaussian real and imaginary parts of standard deviation ``std``,
        one image per generator: (N, 3, H, W // 2 + 1, 2)."""
        c, h, w = shape
        return torch.stack(
            [torch.randn((c, h, w // 2 + 1, 2), generator=g) * std for g in generators]
        )

    @classmethod
    def from_image(
        cls, image: torch.Tensor, decorrelate: bool = True, decay_power: float = 1.0
    ) -> FourierParam:
        """The parameterization whose :meth:`image` is ``image`` (N, 3, H, W), values strictly
        inside (0, 1): the inverse of every step (logit, colour matrix, FFT, 1/f scale)."""
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"an image batch is (N, 3, H, W), not {tuple(image.shape)}")
        x = image.detach().double().clamp(1e-6, 1 - 1e-6)
        t = torch.log(x) - torch.log1p(-x)
        if decorrelate:
            m = color_matrix(image.device).double()
            t = torch.einsum("ij,njhw->nihw", torch.linalg.inv(m), t)
        h, w = image.shape[-2:]
        spec = torch.fft.rfft2(t * FOURIER_IMAGE_SCALE, norm="ortho")
        spec = spec / _freq_scale(h, w, decay_power).double().to(image.device)
        return cls(spec.to(torch.complex64), (h, w), decorrelate, decay_power)
