"""The result of a feature visualization: images, what the model saw, and how the objective grew."""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

__all__ = ["Visualization"]


@dataclass
class Visualization:
    """Optimized images, ``copies`` per objective (objective ``g`` owns images
    ``g * copies .. (g + 1) * copies - 1``).

    Attributes:
        images: (N, 3, H, W) display pixels in [0, 1] (CPU); :meth:`image` gives a PIL image.
        inputs: (N, 3, H, W) what the model saw: the images through the bundle's preprocessing.
        trace: (steps, N) each image's objective at each step (on the transformed view the step
            optimized; without penalties).
        values: (N,) each image's objective on the final, untransformed image.
        output: (N, classes) the model output on the final images (None if not a tensor).
        objectives: the objective of each image (its name).
        copy: which copy of its objective each image is (0 .. copies - 1).
        options: every option the run used (the preset's and the caller's), with ``preset``,
            ``steps``, ``size``, ``seed``.
    """

    images: torch.Tensor
    inputs: torch.Tensor
    trace: torch.Tensor
    values: torch.Tensor
    output: torch.Tensor | None
    objectives: list[str]
    copy: list[int]
    options: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] | None = None
    model: str = "model"

    def __len__(self) -> int:
        return self.images.shape[0]

    def __repr__(self) -> str:
        return (
            f"Visualization(n={len(self)}, size={tuple(self.images.shape[2:])}, "
            f"preset={self.options.get('preset')!r}, steps={self.options.get('steps')}, "
            f"objectives={list(dict.fromkeys(self.objectives))})"
        )

    # -- reading ---------------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        """A file-safe name per image: the objective, and the copy when there are several."""
        copies = self.options.get("copies", 1)
        out = []
        for name, k in zip(self.objectives, self.copy):
            stem = "".join(ch if ch.isalnum() or ch in "._-@" else "_" for ch in name)
            stem = "_".join(p for p in stem.split("_") if p) or "objective"
            out.append(f"{stem}_{k}" if copies > 1 else stem)
        seen: dict[str, int] = {}
        for i, label in enumerate(out):
            c = seen.get(label, 0)
            seen[label] = c + 1
            if c:
                out[i] = f"{label}-{c}"
        return out

    def probabilities(self) -> torch.Tensor:
        """(N, classes) softmax of :attr:`output`."""
        if self.output is None or self.output.ndim != 2:
            raise ValueError("this model's output is not (N, classes)")
        return self.output.float().softmax(dim=1)

    def top_predictions(self, k: int = 5) -> list[list[tuple[int, str, float]]]:
        """Per image, the model's top-k classes on the final image: (index, name, probability)."""
        if self.output is None or self.output.ndim != 2:
            return [[] for _ in range(len(self))]
        values, idx = self.probabilities().topk(min(k, self.output.shape[1]), dim=1)
        return [
            [(int(i), self._name(int(i)), float(v)) for v, i in zip(vs, ids)]
            for vs, ids in zip(values, idx)
        ]

    def _name(self, index: int) -> str:
        if self.class_names and 0 <= index < len(self.class_names):
            return self.class_names[index].split(",")[0].strip()
        return f"class {index}"

    # -- drawing ---------------------------------------------------------------------------------
    def image(self, i: int = 0) -> Image.Image:
        """Image ``i`` as an RGB PIL image (uint8)."""
        pixels = (self.images[i].permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8)
        return Image.fromarray(pixels.cpu().numpy())

    def grid(self, columns: int | None = None, gap: int = 2) -> Image.Image:
        """All images in a grid (default: one row per objective, its copies side by side)."""
        from convscope.viz.featurevis import image_grid

        copies = self.options.get("copies", 1)
        cols = columns or (copies if copies > 1 else min(len(self), 8))
        return image_grid([self.image(i) for i in range(len(self))], cols, gap)

    def files(self) -> dict[str, bytes]:
        """What :meth:`save` writes: one ``<objective>[_<copy>].png`` per image."""
        from convscope.viz.render import png_bytes

        return {f"{label}.png": png_bytes(self.image(i)) for i, label in enumerate(self.labels)}

    def save(self, folder: str | os.PathLike) -> list[Path]:
        """Write one PNG per image under ``folder`` (all or nothing)."""
        from convscope.fileio import write_all

        return write_all(folder, self.files())

    def _repr_html_(self) -> str:
        from convscope.viz.render import png_data_uri

        cells = []
        for i in range(len(self)):
            caption = f"{self.objectives[i]}: {float(self.values[i]):.3g}"
            cells.append(
                f'<figure style="display:inline-block;margin:4px">'
                f'<img src="{png_data_uri(self.image(i))}" width="160">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        head = html.escape(
            f"{self.model}: {self.options.get('preset') or 'no preset'}, "
            f"{self.options.get('steps')} steps"
        )
        return f"<div><b>{head}</b><br>{''.join(cells)}</div>"
