"""Transformation robustness: the image is randomly moved, scaled and rotated before each step.

Lucid's standard transforms (Olah et al., *Feature Visualization*, Distill 2017, "Transformation
robustness"; ``lucid/optvis/transform.py``): pad 12 pixels with grey, jitter by up to 8 pixels,
scale by 0.9-1.1, rotate by -10..10 degrees (0 more often), jitter by up to 4 pixels. An image
that excites a unit only at one exact placement is noise; one that survives these is a picture.

Here the whole chain is one affine resampling per image (:func:`torch.nn.functional.grid_sample`,
bilinear): the model always sees a ``size`` x ``size`` view of the padded canvas, so a step costs
one forward and backward at ``size`` whatever the transforms, and each image of a batch gets its
own random draw. The draws come from a table made before the loop from the image's own generator
(:meth:`Transforms.draw`), so an image gets the same transforms alone or in any batch, and no
random number is drawn on the host during the optimization.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["STANDARD", "Transforms"]

# One row of a draw table: shift 1 (x, y), scale, angle (degrees), shift 2 (x, y).
_COLUMNS = 6


@dataclass(frozen=True)
class Transforms:
    """Pad, jitter, scale, rotate, jitter — as one random affine view per image and step.

    Attributes:
        pad: grey border (pixels) added around the image; the view covers the padded canvas.
        jitter: the first shift: integers ``-(jitter // 2) .. (jitter - 1) // 2`` pixels per axis
            (``jitter`` values, as Lucid's ``jitter(d)``); 0 or 1: none.
        scales: the zoom factors drawn from (uniformly).
        angles: the rotations drawn from, in degrees (uniformly; repeat 0 to favour it).
        jitter2: the second shift, after scaling and rotating.
        fill: the grey of the padding and of whatever the view uncovers (display units).
    """

    pad: int = 0
    jitter: int = 0
    scales: tuple[float, ...] = (1.0,)
    angles: tuple[float, ...] = (0.0,)
    jitter2: int = 0
    fill: float = 0.5

    def __post_init__(self) -> None:
        for name in ("pad", "jitter", "jitter2"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"transforms: {name} is an integer >= 0, not {v!r}")
        if not self.scales or any(not (s > 0) for s in self.scales):
            raise ValueError(f"transforms: scales are numbers > 0, not {self.scales!r}")
        if not self.angles:
            raise ValueError("transforms: angles must not be empty")

    @property
    def identity(self) -> bool:
        return (
            self.pad == 0
            and self.jitter <= 1
            and self.jitter2 <= 1
            and set(self.scales) == {1.0}
            and set(self.angles) == {0.0}
        )

    def describe(self) -> str:
        if self.identity:
            return "none"
        lo, hi = min(self.scales), max(self.scales)
        return (
            f"pad {self.pad}, jitter {self.jitter}, scale {lo:g}-{hi:g}, rotate "
            f"{min(self.angles):g}..{max(self.angles):g} deg, jitter {self.jitter2}"
        )

    # -- random draws ---------------------------------------------------------------------------
    def draw(self, steps: int, generator: torch.Generator) -> torch.Tensor:
        """(steps, 6) draws for one image: shift 1 (x, y), scale, angle, shift 2 (x, y)."""
        out = torch.zeros(steps, _COLUMNS)
        if self.identity:
            out[:, 2] = 1.0
            return out
        j1, j2 = max(self.jitter, 1), max(self.jitter2, 1)
        out[:, 0:2] = torch.randint(0, j1, (steps, 2), generator=generator) - j1 // 2
        scales = torch.tensor(self.scales, dtype=torch.float32)
        out[:, 2] = scales[torch.randint(0, len(self.scales), (steps,), generator=generator)]
        angles = torch.tensor(self.angles, dtype=torch.float32)
        out[:, 3] = angles[torch.randint(0, len(self.angles), (steps,), generator=generator)]
        out[:, 4:6] = torch.randint(0, j2, (steps, 2), generator=generator) - j2 // 2
        return out

    # -- applying -------------------------------------------------------------------------------
    def matrices(self, draws: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(N, 2, 3) ``theta`` for :func:`F.affine_grid` from (N, 6) draws: an output position
        ``u`` (normalized) samples the image at ``A u + b`` (normalized, ``align_corners=False``).

        In pixels from the image centre, the view point ``q = D_view u`` (the canvas of
        ``size + 2 pad``) came from the image point ``R(-angle) (q - shift2) / scale - shift1``."""
        h, w = size
        d = draws.to(torch.float32)
        t1, s, ang, t2 = d[:, 0:2], d[:, 2], d[:, 3] * (math.pi / 180), d[:, 4:6]
        cos, sin = torch.cos(ang), torch.sin(ang)
        rot = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
        view = torch.tensor([(w + 2 * self.pad) / 2, (h + 2 * self.pad) / 2], device=d.device)
        half = torch.tensor([w / 2, h / 2], device=d.device)
        a = rot * view[None, None, :] / s[:, None, None] / half[None, :, None]
        b = (-(rot @ t2[:, :, None])[:, :, 0] / s[:, None] - t1) / half[None, :]
        return torch.cat([a, b[:, :, None]], dim=2)

    def apply(self, image: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        """The views of ``image`` (N, 3, H, W) for one step's (N, 6) ``draws`` (on its device)."""
        if self.identity:
            return image
        theta = self.matrices(draws, (image.shape[2], image.shape[3]))
        grid = F.affine_grid(theta, list(image.shape), align_corners=False)
        moved = F.grid_sample(
            image - self.fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        return moved + self.fill


NONE = Transforms()
# Lucid's standard_transforms (transform.py): pad(12), jitter(8), random_scale(0.9..1.1 in
# steps of 0.02), random_rotate(-10..10 and five extra zeros), jitter(4).
STANDARD = Transforms(
    pad=12,
    jitter=8,
    scales=tuple(round(1 + (i - 5) / 50, 2) for i in range(11)),
    angles=tuple(float(a) for a in range(-10, 11)) + (0.0,) * 5,
    jitter2=4,
)
