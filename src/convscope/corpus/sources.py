"""Corpora: a fixed, indexed collection of images that the dataset-level tools stream over.

A :class:`Corpus` gives every image a *global index* that never depends on how the corpus is read
(batch size, workers, ranks), so results can name images by index and be merged across processes:

- a folder: every file with an image suffix under it (recursively), sorted by relative path
  (as a POSIX string), so index ``i`` is the ``i``-th path in that order;
- a list of paths: in the order given;
- a torch ``Dataset`` of images: its own indices (an item may be a PIL image, an array, an
  ``(image, label)`` pair, or a ``(C, H, W)`` tensor that is already the model's input);
- ``"samples"``: the sample photos (``convscope samples``), in their listed order;
- ``"samples-crops"`` (``"samples-crops:N"`` for the first N): a seeded, deterministic set of
  4096 crops, flips and rescales of the sample photos (:class:`SampleCrops`); item ``i`` depends
  only on ``(seed, i)``;
- ``"shapes"`` (``"shapes:N"`` for the first N, default 4096): the procedural shapes world
  (:mod:`convscope.data.shapes`, seed 0, 64 x 64, one to three shapes), image ``i`` being
  ``generate(..)``'s image ``i``, so a mined patch can be checked against the world's truth
  (:meth:`ShapesCorpus.truth`).

Images are decoded in DataLoader workers with the bundle's preprocessing (:func:`batches`). A file
that cannot be decoded is not fatal: its batch goes on without it, and the consumer gets its index
and the reason, so jobs count it and log its path.

Each corpus has a :meth:`~Corpus.fingerprint`: a short hash of what it holds (relative paths,
sizes and modification times of files; the seed and size of the crops) that checkpoints and caches
are keyed by, so a corpus that changed is never mixed with stale results.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from convscope.errors import ConvscopeError, ImageError

__all__ = [
    "IMAGE_SUFFIXES",
    "Batch",
    "Corpus",
    "CorpusError",
    "DatasetCorpus",
    "FolderCorpus",
    "PathsCorpus",
    "SampleCrops",
    "SamplesCorpus",
    "ShapesCorpus",
    "Subset",
    "batches",
    "open",
]

#: File suffixes a folder corpus picks up (case-insensitive).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")

#: Size of the built-in ``samples-crops`` corpus.
N_CROPS = 4096


class CorpusError(ConvscopeError):
    """A corpus cannot be opened or read (empty folder, no images, unknown spec)."""


class Corpus(torch.utils.data.Dataset):
    """An indexed collection of images. Subclasses define :meth:`load` (index -> PIL image, or an
    ImageError for an undecodable item), ``__len__``, :meth:`label` and :meth:`_identity`."""

    kind = "corpus"

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self, index: int) -> Image.Image | torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def label(self, index: int) -> str:
        """A short human name for item ``index`` (a relative path, a sample name, a crop)."""
        return f"{self.kind}[{index}]"

    def _identity(self) -> list[Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def name(self) -> str:
        return self.kind

    def fingerprint(self) -> str:
        """A 16-hex-digit hash of what the corpus holds; equal fingerprints mean equal corpora."""
        h = hashlib.sha256(repr((self.kind, len(self), self._identity())).encode())
        return h.hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """What a result's metadata says about the corpus."""
        return {
            "name": self.name,
            "kind": self.kind,
            "size": len(self),
            "fingerprint": self.fingerprint(),
        }

    def pixels(self, index: int, bundle: Any) -> np.ndarray:
        """The (H, W, 3) uint8 image the model sees for item ``index`` (after the bundle's resize
        and crop, before normalization): what patches are cut from."""
        from convscope.core.bundle import Preprocess

        item = self.load(index)
        if isinstance(item, torch.Tensor):
            pix = bundle.pixels_of(item.unsqueeze(0))
            if pix is None:  # a custom preprocess: show the tensor min-max scaled
                t = item.float()
                t = (t - t.min()) / (t.max() - t.min()).clamp_min(1e-12)
                t = t[:3] if t.shape[0] >= 3 else t[:1].expand(3, -1, -1)
                return (t * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            return pix[0].cpu().numpy()
        if isinstance(bundle.preprocess, Preprocess):
            return np.asarray(bundle.preprocess.geometry(item), dtype=np.uint8)
        x = bundle.preprocess(item)
        h, w = x.shape[-2:]
        return np.asarray(item.resize((w, h), Image.BILINEAR), dtype=np.uint8)

    def head(self, n: int) -> Corpus:
        """The first ``n`` items (same indices), e.g. for a quick run."""
        return Subset(self, n)

    def __getitem__(self, index: int) -> Image.Image | torch.Tensor:
        return self.load(index)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {len(self)} images>"


class FolderCorpus(Corpus):
    """Every image file under ``root`` (recursive), sorted by relative path."""

    kind = "folder"

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise CorpusError(f"corpus folder {self.root} does not exist")
        if not self.root.is_dir():
            raise CorpusError(f"corpus {self.root} is not a folder")
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for f in filenames:
                if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES):
                    found.append(Path(dirpath, f).relative_to(self.root).as_posix())
        if not found:
            raise CorpusError(
                f"corpus folder {self.root} holds no image files "
                f"({', '.join(s[1:] for s in IMAGE_SUFFIXES)}; searched recursively)"
            )
        self.relpaths = sorted(found)

    @property
    def name(self) -> str:
        return str(self.root)

    def __len__(self) -> int:
        return len(self.relpaths)

    def path(self, index: int) -> Path:
        return self.root / self.relpaths[index]

    def label(self, index: int) -> str:
        return self.relpaths[index]

    def load(self, index: int) -> Image.Image:
        from convscope.data.images import load_image

        return load_image(self.path(index))

    def _identity(self) -> list[Any]:
        out = []
        for rel in self.relpaths:
            try:
                st = (self.root / rel).stat()
                out.append((rel, st.st_size, st.st_mtime_ns))
            except OSError:
                out.append((rel, None, None))
        return out


class PathsCorpus(Corpus):
    """A list of image paths, indexed in the order given."""

    kind = "paths"

    def __init__(self, paths: Sequence[str | os.PathLike]) -> None:
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise CorpusError("the list of corpus paths is empty")

    @property
    def name(self) -> str:
        return f"{len(self.paths)} paths"

    def __len__(self) -> int:
        return len(self.paths)

    def label(self, index: int) -> str:
        return str(self.paths[index])

    def load(self, index: int) -> Image.Image:
        from convscope.data.images import load_image

        return load_image(self.paths[index])

    def _identity(self) -> list[Any]:
        out = []
        for p in self.paths:
            try:
                st = p.stat()
                out.append((str(p.resolve()), st.st_size, st.st_mtime_ns))
            except OSError:
                out.append((str(p), None, None))
        return out


class DatasetCorpus(Corpus):
    """A torch ``Dataset`` whose items are images: PIL images, arrays, ``(image, label, ...)``
    tuples, or ``(C, H, W)`` tensors already preprocessed for the model (used as they are).

    Its fingerprint is the dataset's type and length, plus ``fingerprint`` when given: pass one
    (a version, a hash of your index file) if the dataset's content can change at the same length.
    """

    kind = "dataset"

    def __init__(self, dataset: Any, fingerprint: str | None = None) -> None:
        try:
            n = len(dataset)
        except TypeError:
            raise CorpusError(
                f"a {type(dataset).__name__} has no len(); a corpus needs a map-style Dataset"
            ) from None
        if n == 0:
            raise CorpusError(f"the dataset {type(dataset).__name__} is empty")
        self.dataset = dataset
        self._n = n
        self._user_fingerprint = fingerprint

    @property
    def name(self) -> str:
        return type(self.dataset).__name__

    def __len__(self) -> int:
        return self._n

    def load(self, index: int) -> Image.Image | torch.Tensor:
        from convscope.data.images import load_image

        item = self.dataset[index]
        if isinstance(item, tuple | list):
            item = item[0]
        if isinstance(item, torch.Tensor):
            if item.ndim != 3:
                raise CorpusError(
                    f"dataset item {index} is a tensor of shape {tuple(item.shape)}; "
                    "a corpus tensor is one preprocessed (C, H, W) image"
                )
            return item
        return load_image(item)

    def _identity(self) -> list[Any]:
        cls = type(self.dataset)
        return [f"{cls.__module__}.{cls.__qualname__}", self._user_fingerprint]


class SamplesCorpus(Corpus):
    """The sample photos (``convscope samples``) that load offline, in their listed order."""

    kind = "samples"

    def __init__(self) -> None:
        self.names = _available_samples()

    def __len__(self) -> int:
        return len(self.names)

    def label(self, index: int) -> str:
        return f"sample:{self.names[index]}"

    def load(self, index: int) -> Image.Image:
        return Image.fromarray(_sample_array(self.names[index]))

    def _identity(self) -> list[Any]:
        return list(self.names)


@dataclass(frozen=True)
class CropSpec:
    """How crop ``i`` of :class:`SampleCrops` is made from a sample photo."""

    sample: str
    box: tuple[int, int, int, int]  # left, top, right, bottom in the photo's pixels
    flip: bool
    size: int  # the crop is rescaled so that its longer side has this many pixels


class SampleCrops(Corpus):
    """A seeded, deterministic set of ``n`` crops of the sample photos (default 4096).

    Crop ``i`` uses ``numpy.random.default_rng([seed, i])``: a photo chosen uniformly; a box whose
    area is 8-100 % of the photo's and whose aspect ratio is 3/4-4/3 (log-uniform), placed
    uniformly; a horizontal flip with probability 1/2; and a rescale of its longer side to 64-320
    pixels (bilinear). Item ``i`` does not depend on ``n``, so ``samples-crops:N`` is a prefix.
    """

    kind = "samples-crops"

    def __init__(self, n: int = N_CROPS, seed: int = 0) -> None:
        if n < 1:
            raise CorpusError(f"samples-crops needs at least one crop, not {n}")
        self.n, self.seed = int(n), int(seed)
        self.names = _available_samples()

    @property
    def name(self) -> str:
        return f"samples-crops:{self.n}" + (f" (seed {self.seed})" if self.seed else "")

    def __len__(self) -> int:
        return self.n

    def spec(self, index: int) -> CropSpec:
        if not 0 <= index < self.n:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, index])
        name = self.names[int(rng.integers(len(self.names)))]
        h, w = _sample_shape(name)
        area = rng.uniform(0.08, 1.0) * h * w
        ratio = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
        cw = int(round(min(w, np.sqrt(area * ratio))))
        ch = int(round(min(h, np.sqrt(area / ratio))))
        left = int(rng.integers(0, w - cw + 1))
        top = int(rng.integers(0, h - ch + 1))
        flip = bool(rng.random() < 0.5)
        size = int(rng.integers(64, 321))
        return CropSpec(name, (left, top, left + cw, top + ch), flip, size)

    def label(self, index: int) -> str:
        s = self.spec(index)
        return f"crop {index} of sample:{s.sample} {s.box}{' flipped' if s.flip else ''}"

    def load(self, index: int) -> Image.Image:
        s = self.spec(index)
        im = Image.fromarray(_sample_array(s.sample)).crop(s.box)
        if s.flip:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        w, h = im.size
        scale = s.size / max(w, h)
        return im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)

    def _identity(self) -> list[Any]:
        return ["crops-v1", self.seed, list(self.names)]


class ShapesCorpus(Corpus):
    """The first ``n`` images of the shapes world of ``seed`` (:func:`convscope.data.shapes.
    generate_indices`, default options: 64 x 64 RGB, one to three shapes). Item ``i`` is the
    world's ``i``-th image rounded to 8 bits (a PIL image, as a saved copy would be); it depends on
    ``(seed, i)`` only, so ``shapes:N`` is a prefix of ``shapes``."""

    kind = "shapes"

    def __init__(self, n: int = N_CROPS, seed: int = 0) -> None:
        if n < 1:
            raise CorpusError(f"shapes needs at least one image, not {n}")
        self.n, self.seed = int(n), int(seed)

    @property
    def name(self) -> str:
        return f"shapes:{self.n}" + (f" (seed {self.seed})" if self.seed else "")

    def __len__(self) -> int:
        return self.n

    def truth(self, index: int) -> Any:
        """Image ``index`` with its masks and labels (a :class:`~convscope.data.shapes.
        ShapesBatch` of one)."""
        from convscope.data.shapes import generate_indices

        if not 0 <= index < self.n:
            raise IndexError(index)
        return generate_indices([index], self.seed)

    def label(self, index: int) -> str:
        from convscope.data.shapes import SHAPES

        labels = self.truth(index).labels
        shape, count = SHAPES[int(labels["shape"][0])], int(labels["count"][0])
        return f"shapes {index}: {shape}" + (f" (largest of {count})" if count > 1 else "")

    def load(self, index: int) -> Image.Image:
        pixels = (self.truth(index).images[0] * 255).round().to(torch.uint8)
        return Image.fromarray(pixels.permute(1, 2, 0).numpy())

    def _identity(self) -> list[Any]:
        return ["shapes-v1", self.seed]


class Subset(Corpus):
    """The first ``n`` items of another corpus, with the same indices."""

    def __init__(self, parent: Corpus, n: int) -> None:
        if n < 1:
            raise CorpusError(f"a corpus head needs at least one item, not {n}")
        self.parent, self.n = parent, min(int(n), len(parent))
        self.kind = parent.kind

    @property
    def name(self) -> str:
        return f"{self.parent.name} (first {self.n})"

    def __len__(self) -> int:
        return self.n

    def label(self, index: int) -> str:
        return self.parent.label(index)

    def load(self, index: int) -> Image.Image | torch.Tensor:
        if not 0 <= index < self.n:
            raise IndexError(index)
        return self.parent.load(index)

    def _identity(self) -> list[Any]:
        return ["head", self.n, self.parent.fingerprint()]


@lru_cache(maxsize=1)
def _available_samples_cached() -> tuple[str, ...]:
    from convscope.data.samples import samples

    names = []
    for name in samples():
        try:
            _sample_array(name)
        except ImageError:  # china/flower without scikit-learn
            continue
        names.append(name)
    return tuple(names)


def _available_samples() -> list[str]:
    names = list(_available_samples_cached())
    if not names:
        raise CorpusError("no sample photo can be loaded (is scikit-image installed?)")
    return names


@lru_cache(maxsize=32)
def _sample_array(name: str) -> np.ndarray:
    from convscope.data.samples import load_sample

    a = np.asarray(load_sample(name), dtype=np.uint8)
    a.setflags(write=False)
    return a


def _sample_shape(name: str) -> tuple[int, int]:
    return _sample_array(name).shape[:2]


def open(spec: Any, *, fingerprint: str | None = None) -> Corpus:  # noqa: A001 - the API's name
    """A :class:`Corpus` from ``spec``.

    ``spec`` is a folder, ``"samples"``, ``"samples-crops"`` or ``"samples-crops:N"`` (the first
    N crops), ``"shapes"`` or ``"shapes:N"`` (the shapes world), a list of image paths, a torch ``Dataset`` of images (``fingerprint`` names its
    version), or a Corpus (returned as is). Raises :class:`CorpusError` for an empty or missing
    folder or list.
    """
    if isinstance(spec, Corpus):
        return spec
    if isinstance(spec, str | os.PathLike):
        text = os.fspath(spec)
        if text == "samples":
            return SamplesCorpus()
        if text == "shapes" or text.startswith("shapes:"):
            _, _, count = text.partition(":")
            if count and not count.isdigit():
                raise CorpusError(f"bad corpus {text!r}: write shapes or shapes:N")
            return ShapesCorpus(int(count) if count else N_CROPS)
        if text == "samples-crops" or text.startswith("samples-crops:"):
            _, _, count = text.partition(":")
            if count and not count.isdigit():
                raise CorpusError(f"bad corpus {text!r}: write samples-crops or samples-crops:N")
            return SampleCrops(int(count) if count else N_CROPS)
        return FolderCorpus(text)
    if isinstance(spec, Sequence) and not isinstance(spec, bytes):
        if all(isinstance(p, str | os.PathLike) for p in spec):
            return PathsCorpus(spec)
        raise CorpusError("a corpus list must hold image paths only")
    if isinstance(spec, torch.utils.data.Dataset) or hasattr(spec, "__getitem__"):
        return DatasetCorpus(spec, fingerprint=fingerprint)
    raise CorpusError(
        f"cannot make a corpus from a {type(spec).__name__}: give a folder, a list of paths, a "
        "torch Dataset, 'samples', 'samples-crops[:N]' or 'shapes[:N]'"
    )


# -- reading in DataLoader workers --------------------------------------------------------------


@dataclass
class Batch:
    """One batch as the model sees it: ``x`` on the model's device, ``indices`` (the global
    indices of its rows, int64), and the items that could not be decoded as (index, reason)."""

    number: int
    x: torch.Tensor | None
    indices: torch.Tensor
    skipped: list[tuple[int, str]]


class _Decoded(torch.utils.data.Dataset):
    """Item i -> (i, uint8 HxWx3 pixels or a preprocessed tensor, or None, reason)."""

    def __init__(self, corpus: Corpus, preprocess: Any) -> None:
        self.corpus, self.preprocess = corpus, preprocess

    def __len__(self) -> int:
        return len(self.corpus)

    def __getitem__(self, index: int) -> tuple[int, Any, str]:
        from convscope.core.bundle import Preprocess

        try:
            item = self.corpus.load(index)
        except ImageError as e:
            return index, None, str(e)
        if isinstance(item, torch.Tensor):
            return index, item, ""
        if isinstance(self.preprocess, Preprocess):
            return index, torch.from_numpy(np.array(self.preprocess.geometry(item))), ""
        x = self.preprocess(item)
        if not isinstance(x, torch.Tensor) or x.ndim != 3:
            raise TypeError("a custom preprocess must return a (C, H, W) tensor per image")
        return index, x, ""


def _collate(items: list[tuple[int, Any, str]]) -> tuple[torch.Tensor, Any, list[tuple[int, str]]]:
    good = [(i, x) for i, x, _ in items if x is not None]
    skipped = [(i, reason) for i, x, reason in items if x is None]
    indices = torch.tensor([i for i, _ in good], dtype=torch.int64)
    if not good:
        return indices, None, skipped
    kinds = {x.dtype == torch.uint8 and x.ndim == 3 and x.shape[-1] == 3 for _, x in good}
    shapes = {tuple(x.shape) for _, x in good}
    if len(shapes) > 1:
        raise CorpusError(
            f"the corpus gives images of different shapes in one batch ({sorted(shapes)[:3]}); "
            "use a preprocessing that resizes to one size"
        )
    return indices, (torch.stack([x for _, x in good]), kinds.pop()), skipped


def batches(
    corpus: Corpus,
    bundle: Any,
    numbers: Sequence[int],
    batch_size: int,
    *,
    num_workers: int = 0,
) -> Iterator[Batch]:
    """Decode and preprocess the batches ``numbers`` of ``corpus`` (batch b holds the global
    indices ``b*batch_size .. (b+1)*batch_size - 1``), in DataLoader workers, in order."""
    from convscope.core.bundle import Preprocess

    n = len(corpus)
    index_lists = [list(range(b * batch_size, min(n, (b + 1) * batch_size))) for b in numbers]
    if not index_lists:
        return
    loader = torch.utils.data.DataLoader(
        _Decoded(corpus, bundle.preprocess),
        batch_sampler=index_lists,
        num_workers=num_workers,
        collate_fn=_collate,
        persistent_workers=False,
        multiprocessing_context="fork" if num_workers and os.name == "posix" else None,
    )
    device = bundle.device
    for number, (indices, data, skipped) in zip(numbers, loader):
        x = None
        if data is not None:
            stacked, is_pixels = data
            stacked = stacked.to(device, non_blocking=True)
            if is_pixels and isinstance(bundle.preprocess, Preprocess):
                x = bundle.preprocess.normalize(stacked)
            else:
                x = stacked.float() if not stacked.is_floating_point() else stacked
        yield Batch(number, x, indices, skipped)
