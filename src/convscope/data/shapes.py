"""The shapes world: procedural images with pixel-level ground truth, rendered in torch.

Each image holds one or several shapes (:data:`SHAPES`: eight outlines and two textures) with a
random colour (:data:`COLOURS`), size, position and rotation, on a background that is flat, a
gradient, noise or a faint texture. Every image comes with its masks (class and instance, per
pixel) and with labels for several tasks (:data:`TASKS`): the class, colour, size bucket and
quadrant of its largest shape, and how many shapes it shows.

Image ``i`` of seed ``s`` depends on ``(s, i)`` only: every random number is a counter-based hash
of the seed, the image index and what it draws (no generator state). So ``generate(n, seed)`` is
batched and deterministic on any device, ``generate(10, seed)`` is the first ten images of
``generate(1000, seed)``, a :class:`ShapesDataset` returns the same image for an index every time,
and a training run that resumes at step k sees exactly the images it would have seen.

Shapes are drawn from signed distance functions in each shape's own frame (rotated and scaled), with
one pixel of anti-aliasing; a pixel belongs to a shape where its signed distance is negative, and
to the last shape drawn there (shapes are drawn in order, later ones on top).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from convscope.errors import ConvscopeError

__all__ = [
    "BACKGROUNDS",
    "COLOURS",
    "GRAY28",
    "SHAPES",
    "TASKS",
    "ShapesBatch",
    "ShapesDataset",
    "batches",
    "generate",
    "generate_indices",
]

SHAPES = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "bar",
    "ring",
    "crescent",
    "stripes",
    "checks",
)
# name -> RGB in [0, 1]; every colour is brighter (luminance >= 0.4) than any background (<= 0.36).
_PALETTE = {
    "red": (1.0, 0.2, 0.2),
    "orange": (1.0, 0.55, 0.05),
    "yellow": (1.0, 0.9, 0.1),
    "green": (0.2, 0.85, 0.2),
    "cyan": (0.1, 0.9, 0.9),
    "blue": (0.3, 0.5, 1.0),
    "magenta": (0.95, 0.25, 0.95),
    "white": (0.95, 0.95, 0.95),
}
COLOURS = tuple(_PALETTE)
BACKGROUNDS = ("flat", "gradient", "noise", "texture")
MAX_COUNT = 4
TASKS: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "colour": COLOURS,
    "count": tuple(str(k) for k in range(MAX_COUNT + 1)),  # label = the number of shapes
    "size": ("small", "medium", "large"),
    "quadrant": ("top-left", "top-right", "bottom-left", "bottom-right"),
}
# The lecture-004 setting: one centred upright shape, 28 x 28 grayscale (see :func:`generate`).
GRAY28 = {
    "size": 28,
    "grayscale": True,
    "count": (1, 1),
    "radius": (0.6, 0.85),
    "jitter": 0.15,
    "rotate": False,
    "backgrounds": ("flat", "gradient", "noise"),
}
MIN_RADIUS_PX = 3.0  # the smallest shape's radius in pixels: below it, shapes are unrecognizable

_M32 = 0xFFFFFFFF
_CANDIDATES = 8  # positions tried per shape to avoid overlapping earlier shapes


@dataclass
class ShapesBatch:
    """Images of the shapes world with their truth. Unpacks as ``images, masks, labels``.

    Attributes:
        images: (N, 3, S, S) float in [0, 1] ((N, 1, S, S) in grayscale).
        masks: (N, S, S) int64: 0 for background, 1 + the shape class elsewhere.
        labels: task name (:data:`TASKS`) -> (N,) int64 class index.
        instances: (N, S, S) int64: 0 for background, 1 + the shape's slot elsewhere.
        classes: (N, MAX) int64: the class of each slot's shape, -1 where the slot is empty or the
            shape is fully hidden (so ``instances == k + 1`` marks a shape of class ``classes[:, k]``).
        indices: (N,) the image indices (image ``i`` of a seed is always the same image).
    """

    images: torch.Tensor
    masks: torch.Tensor
    labels: dict[str, torch.Tensor]
    instances: torch.Tensor
    classes: torch.Tensor
    indices: torch.Tensor

    def __iter__(self) -> Iterator:
        return iter((self.images, self.masks, self.labels))

    def __len__(self) -> int:
        return self.images.shape[0]


# --- counter-based random numbers --------------------------------------------------------------


def _mul32(x: torch.Tensor, a: int) -> torch.Tensor:
    """(x * a) mod 2**32 for 0 <= x, a < 2**32, in int64 without overflow."""
    return (x * (a & 0xFFFF) + (((x * (a >> 16)) & 0xFFFF) << 16)) & _M32


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash with good avalanche (the 'lowbias32' constants of C. Wellons)."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


class _Draws:
    """Uniform numbers in [0, 1) keyed by (seed, image index, stream[, element])."""

    def __init__(self, seed: int, indices: torch.Tensor):
        self.key = _hash32(indices.to(torch.int64) ^ _hash32(torch.tensor(seed, dtype=torch.int64)))

    def uniform(self, stream: int, shape: Sequence[int] = ()) -> torch.Tensor:
        """(N, *shape) uniforms for ``stream``, each element its own draw."""
        k = _hash32(self.key ^ _hash32(torch.tensor(stream * 0x9E3779B1 & _M32)))
        n = k.shape[0]
        count = math.prod(shape)
        if count:
            elems = torch.arange(count, dtype=torch.int64, device=k.device).view(1, -1)
            k = _hash32(k.view(n, 1) ^ _hash32(elems + 0x632BE5AB)).view(n, *shape)
        return k.to(torch.float64).div(2.0**32).to(torch.float32)

    def integers(self, stream: int, high: int, shape: Sequence[int] = ()) -> torch.Tensor:
        return (self.uniform(stream, shape) * high).long().clamp_(max=high - 1)


# --- signed distance functions (shape frame: the shape fits in the unit disk) -------------------


def _box(x: torch.Tensor, y: torch.Tensor, hx: float, hy: float) -> torch.Tensor:
    dx, dy = x.abs() - hx, y.abs() - hy
    outside = torch.hypot(dx.clamp(min=0), dy.clamp(min=0))
    return outside + torch.maximum(dx, dy).clamp(max=0)


def _polygon_sides(x: torch.Tensor, y: torch.Tensor, sides: int, inradius: float) -> torch.Tensor:
    """A regular polygon (a vertex at the top) as the largest of its half-plane distances."""
    d = None
    for k in range(sides):
        a = math.pi / 2 + math.pi / sides + 2 * math.pi * k / sides
        h = x * math.cos(a) + y * math.sin(a) - inradius
        d = h if d is None else torch.maximum(d, h)
    return d


def _star(x: torch.Tensor, y: torch.Tensor, points: int = 5, inner: float = 0.42) -> torch.Tensor:
    """A star: fold the angle into half a point, then the distance to the edge from an outer
    vertex A = (1, 0) to an inner vertex B (negative on the centre's side)."""
    sector = 2 * math.pi / points
    a = torch.remainder(torch.atan2(y, x) + math.pi / 2, sector)  # an outer vertex at the top
    a = torch.minimum(a, sector - a)
    r = torch.hypot(x, y)
    qx, qy = r * torch.cos(a), r * torch.sin(a)
    bx, by = inner * math.cos(sector / 2), inner * math.sin(sector / 2)
    ex, ey = bx - 1.0, by
    nx, ny = ey, -ex  # normal to the edge, pointing away from the centre
    norm = math.hypot(nx, ny)
    if nx * 1.0 + ny * 0.0 < 0:
        nx, ny = -nx, -ny
    return ((qx - 1.0) * nx + qy * ny) / norm


def _sdf(cls: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    name = SHAPES[cls]
    r = torch.hypot(x, y)
    if name == "circle":
        return r - 0.85
    if name == "square":
        return _box(x, y, 0.68, 0.68)
    if name == "triangle":
        return _polygon_sides(x, -y - 0.15, 3, 0.46)  # apex up, centred so it fills the disk
    if name == "star":
        return _star(x, y)
    if name == "cross":
        return torch.minimum(_box(x, y, 0.92, 0.26), _box(x, y, 0.26, 0.92))
    if name == "bar":
        return _box(x, y, 0.95, 0.22)
    if name == "ring":
        return (r - 0.66).abs() - 0.22
    if name == "crescent":
        return torch.maximum(r - 0.88, 0.72 - torch.hypot(x - 0.42, y + 0.1))
    if name == "stripes":
        return r - 0.88
    if name == "checks":
        return _box(x, y, 0.7, 0.7)
    raise AssertionError(name)  # pragma: no cover


def _fill(cls: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """The texture of textured shapes in [0, 1] (1: the shape's colour, 0: its dark shade)."""
    name = SHAPES[cls]
    if name == "stripes":
        return (torch.sin(x * (2 * math.pi / 0.55)) > 0).float()
    if name == "checks":
        return (
            (torch.sin(x * (2 * math.pi / 0.7)) * torch.sin(y * (2 * math.pi / 0.7))) > 0
        ).float()
    return None


# --- the generator --------------------------------------------------------------------------


def _check_options(size, count, radius, jitter, backgrounds) -> tuple[int, int, float, float]:
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ConvscopeError(f"size must be an integer of at least 8 pixels, not {size!r}")
    if isinstance(count, int):
        count = (count, count)
    lo, hi = (int(c) for c in count)
    if not 1 <= lo <= hi <= MAX_COUNT:
        raise ConvscopeError(f"count must be a range within 1..{MAX_COUNT}, not {tuple(count)}")
    rmin, rmax = (float(r) for r in radius)
    if not 0 < rmin <= rmax <= 1:
        raise ConvscopeError(f"radius must be a range within (0, 1], not {tuple(radius)}")
    if rmin * size / 2 < MIN_RADIUS_PX:
        need = math.ceil(2 * MIN_RADIUS_PX / rmin)
        raise ConvscopeError(
            f"size {size} is too small for the shapes: the smallest would be "
            f"{rmin * size:.1f} pixels across (radius {rmin} of the half-image); use size >= "
            f"{need} or a larger radius"
        )
    if not 0 <= float(jitter) <= 1:
        raise ConvscopeError(f"jitter must be within [0, 1], not {jitter!r}")
    bad = [b for b in backgrounds if b not in BACKGROUNDS]
    if bad or not backgrounds:
        raise ConvscopeError(
            f"backgrounds must be a non-empty subset of {', '.join(BACKGROUNDS)}; got {list(backgrounds)}"
        )
    return lo, hi, rmin, rmax


def generate(
    n: int,
    seed: int = 0,
    size: int = 64,
    *,
    start: int = 0,
    grayscale: bool = False,
    count: int | tuple[int, int] = (1, 3),
    radius: tuple[float, float] = (0.2, 0.45),
    jitter: float = 1.0,
    rotate: bool = True,
    backgrounds: Sequence[str] = BACKGROUNDS,
    device: torch.device | str | None = None,
) -> ShapesBatch:
    """Images ``start .. start + n - 1`` of the shapes world of ``seed``.

    Returns a :class:`ShapesBatch` (``images, masks, labels = generate(...)``): images (N, 3, S, S)
    in [0, 1], masks (N, S, S) int64 with 0 for background and 1 + the shape class elsewhere, and
    labels (task -> (N,) int64, the tasks of :data:`TASKS`; ``labels["shape"]`` is the class of the
    shape with the most visible pixels).

    Args:
        n: number of images.
        seed: the world (0 <= seed < 2**32).
        size: height and width in pixels.
        start: index of the first image.
        grayscale: (N, 1, S, S) luminance images instead of RGB.
        count: shapes per image (a number or an inclusive range, at most :data:`MAX_COUNT`).
        radius: range of each shape's radius as a fraction of half the image.
        jitter: how far from the centre shapes may lie (1: anywhere they fit, 0: centred).
        rotate: rotate each shape by a random angle (False: upright).
        backgrounds: kinds of background to draw from (:data:`BACKGROUNDS`).
        device: where to render (default CPU).

    ``**GRAY28`` gives lecture 004's setting: one centred shape, 28 x 28 grayscale.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConvscopeError(f"n must be a non-negative integer, not {n!r}")
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ConvscopeError(f"start must be a non-negative integer, not {start!r}")
    idx = torch.arange(start, start + n, dtype=torch.int64, device=device)
    return generate_indices(
        idx,
        seed,
        size,
        grayscale=grayscale,
        count=count,
        radius=radius,
        jitter=jitter,
        rotate=rotate,
        backgrounds=backgrounds,
    )


def generate_indices(
    indices: torch.Tensor | Sequence[int],
    seed: int = 0,
    size: int = 64,
    *,
    grayscale: bool = False,
    count: int | tuple[int, int] = (1, 3),
    radius: tuple[float, float] = (0.2, 0.45),
    jitter: float = 1.0,
    rotate: bool = True,
    backgrounds: Sequence[str] = BACKGROUNDS,
) -> ShapesBatch:
    """The images of the given indices (any order, repeats allowed); options as :func:`generate`."""
    lo, hi, rmin, rmax = _check_options(size, count, radius, jitter, backgrounds)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= _M32:
        raise ConvscopeError(f"seed must be an integer in [0, 2**32), not {seed!r}")
    idx = torch.as_tensor(indices, dtype=torch.int64)
    if idx.ndim != 1 or (idx.numel() and (idx.min() < 0 or idx.max() > _M32)):
        raise ConvscopeError("indices must be a 1-D sequence of integers in [0, 2**32)")
    device = idx.device
    n, s = idx.shape[0], size
    draws = _Draws(seed, idx)

    # pixel centres in [-1, 1]; x to the right, y downwards
    coords = (torch.arange(s, device=device, dtype=torch.float32) + 0.5) * (2.0 / s) - 1.0
    gy, gx = coords.view(1, s, 1), coords.view(1, 1, s)

    image = _background(draws, n, s, backgrounds, gx, gy)
    instances = torch.zeros(n, s, s, dtype=torch.int64, device=device)

    shapes_here = lo + draws.integers(1, hi - lo + 1)  # (N,)
    cls = draws.integers(2, len(SHAPES), (MAX_COUNT,))
    colour = draws.integers(3, len(COLOURS), (MAX_COUNT,))
    rad = rmin + (rmax - rmin) * draws.uniform(4, (MAX_COUNT,))
    angle = 2 * math.pi * draws.uniform(5, (MAX_COUNT,)) * float(bool(rotate))
    tint = (draws.uniform(6, (MAX_COUNT, 3)) - 0.5) * 0.1
    cand = draws.uniform(7, (MAX_COUNT, _CANDIDATES, 2)) * 2 - 1
    palette = torch.tensor(list(_PALETTE.values()), dtype=torch.float32, device=device)
    active = torch.arange(MAX_COUNT, device=device).view(1, -1) < shapes_here.view(-1, 1)

    centres = torch.zeros(n, MAX_COUNT, 2, device=device)
    for k in range(MAX_COUNT):
        # candidate centres where the shape fits inside the image, scaled towards the centre
        reach = (1 - rad[:, k]).clamp(min=0) * float(jitter)
        pos = cand[:, k] * reach.view(n, 1, 1)  # (N, C, 2)
        if k:
            d = torch.cdist(pos, centres[:, :k])  # (N, C, k)
            gap = d - rad[:, k].view(n, 1, 1) - rad[:, :k].view(n, 1, k)
            gap = torch.where(active[:, :k].view(n, 1, k), gap, torch.full_like(gap, 9.0))
            margin = gap.min(dim=2).values  # (N, C)
            order = torch.arange(_CANDIDATES, 0, -1, device=device, dtype=torch.float32)
            score = torch.where(margin >= 0, 100.0 + order, margin)  # first that fits, else best
            pick = score.argmax(dim=1)
        else:
            pick = torch.zeros(n, dtype=torch.int64, device=device)
        centres[:, k] = pos[torch.arange(n, device=device), pick]

        rgb = (palette[colour[:, k]] + tint[:, k]).clamp(0, 1)  # (N, 3)
        for c in range(len(SHAPES)):
            sel = (active[:, k] & (cls[:, k] == c)).nonzero().flatten()
            if not sel.numel():
                continue
            r = rad[sel, k].view(-1, 1, 1)
            cos, sin = (
                torch.cos(angle[sel, k]).view(-1, 1, 1),
                torch.sin(angle[sel, k]).view(-1, 1, 1),
            )
            dx, dy = gx - centres[sel, k, 0].view(-1, 1, 1), gy - centres[sel, k, 1].view(-1, 1, 1)
            lx, ly = (cos * dx + sin * dy) / r, (-sin * dx + cos * dy) / r  # the shape's frame
            sdf = _sdf(c, lx, ly)
            pixel = (2.0 / s) / r  # one pixel in the shape's frame
            alpha = (0.5 - sdf / pixel).clamp(0, 1).unsqueeze(1)  # (M, 1, S, S)
            col = rgb[sel].view(-1, 3, 1, 1)
            tex = _fill(c, lx, ly)
            if tex is not None:
                col = col * (0.3 + 0.7 * tex.unsqueeze(1))
            image[sel] = image[sel] * (1 - alpha) + col * alpha
            inst = instances[sel]
            instances[sel] = torch.where(sdf <= 0, torch.full_like(inst, k + 1), inst)

    # truth from the visible pixels
    visible = torch.zeros(n, MAX_COUNT + 1, dtype=torch.int64, device=device)
    visible = visible.scatter_add_(1, instances.flatten(1), torch.ones_like(instances.flatten(1)))
    visible = visible[:, 1:]  # (N, K) visible pixels per shape
    shown = visible > 0
    classes = torch.where(shown, cls, torch.full_like(cls, -1))
    masks = torch.where(
        instances > 0,
        classes.gather(1, (instances - 1).clamp(min=0).flatten(1)).view(n, s, s) + 1,
        0,
    )
    big = visible.argmax(dim=1)  # the largest visible shape (the first of equals)
    rows = torch.arange(n, device=device)
    rbig = rad[rows, big]
    cbig = centres[rows, big]
    labels = {
        "shape": cls[rows, big],
        "colour": colour[rows, big],
        "count": shown.sum(dim=1),
        "size": ((rbig - rmin) / max(rmax - rmin, 1e-9) * 3).long().clamp(0, 2),
        "quadrant": (cbig[:, 0] >= 0).long() + 2 * (cbig[:, 1] >= 0).long(),
    }
    image = image.clamp_(0, 1)
    if grayscale:
        lum = torch.tensor([0.299, 0.587, 0.114], device=device).view(1, 3, 1, 1)
        image = (image * lum).sum(dim=1, keepdim=True)
    return ShapesBatch(image, masks, labels, instances, classes, idx)


def _background(draws: _Draws, n, s, kinds, gx, gy) -> torch.Tensor:
    """(N, 3, S, S) backgrounds: a flat tinted gray, a gradient to a second gray, noise or faint
    stripes (each kind computed only for its images)."""
    device = gx.device
    kind = torch.tensor([BACKGROUNDS.index(k) for k in kinds], device=device)[
        draws.integers(10, len(kinds))
    ]
    level = 0.04 + 0.24 * draws.uniform(11, (2,))  # two gray levels
    tint = (draws.uniform(12, (3,)) - 0.5) * 0.08
    base = (level[:, 0:1] + tint).view(n, 3, 1, 1)
    out = base.expand(n, 3, s, s).clone()
    theta = 2 * math.pi * draws.uniform(13).view(n, 1, 1)
    period = 0.15 + 0.2 * draws.uniform(15).view(n, 1, 1, 1)
    for k in (1, 2, 3):
        sel = (kind == k).nonzero().flatten()
        if not sel.numel():
            continue
        if k == 2:  # noise: one hashed uniform per pixel, for these images only
            sub = _Draws.__new__(_Draws)
            sub.key = draws.key[sel]
            out[sel] = base[sel] + 0.12 * (sub.uniform(14, (s, s)).unsqueeze(1) - 0.5)
            continue
        along = (torch.cos(theta[sel]) * gx + torch.sin(theta[sel]) * gy).unsqueeze(1)
        if k == 1:
            other = (level[sel, 1:2] + tint[sel]).view(-1, 3, 1, 1)
            out[sel] = base[sel] + (other - base[sel]) * (along + 1) / 2
        else:
            out[sel] = base[sel] + 0.04 * torch.sign(torch.sin(along * math.pi / period[sel]))
    return out.clamp_(0, 1)


def batches(
    batch_size: int, seed: int = 0, *, start: int = 0, stop: int | None = None, **options
) -> Iterator[ShapesBatch]:
    """Consecutive batches of the world of ``seed`` from image ``start`` (endless when ``stop`` is
    None); options as :func:`generate`."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConvscopeError(f"batch_size must be a positive integer, not {batch_size!r}")
    i = start
    while stop is None or i < stop:
        m = batch_size if stop is None else min(batch_size, stop - i)
        yield generate(m, seed, start=i, **options)
        i += m


class ShapesDataset(torch.utils.data.Dataset):
    """``length`` images of the shapes world as a torch Dataset: item ``i`` is
    ``(image, label)`` with the label of ``task``; item ``i`` is always the same image, the
    ``i``-th of :func:`generate` with the same seed and options."""

    def __init__(self, length: int, seed: int = 0, task: str = "shape", **options):
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise ConvscopeError(f"length must be a non-negative integer, not {length!r}")
        if task not in TASKS:
            raise ConvscopeError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
        generate(0, seed, **options)  # validates the options once
        self.length, self.seed, self.task, self.options = length, seed, task, options

    def __len__(self) -> int:
        return self.length

    def sample(self, index: int) -> ShapesBatch:
        """Image ``index`` with all its truth, as a batch of one."""
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} images")
        return generate_indices([index % self.length], self.seed, **self.options)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        b = self.sample(int(index))
        return b.images[0], int(b.labels[self.task][0])
