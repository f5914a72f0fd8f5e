"""The result of an explanation: raw maps plus everything needed to read and draw them."""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from convscope.core.maps import display_norm, normalize_maps

__all__ = ["Comparison", "Explanation"]


@dataclass
class Explanation:
    """Maps for a batch of images, and what they explain.

    Attributes:
        maps: (N, H, W) float tensor at the input resolution (bilinear, align_corners=False),
            raw: not normalized, not rectified beyond what the method's paper does.
        raw_maps: (N, h, w) maps at the resolution the method computed them (the layer's, for CAMs).
        method, layer: the method name and the layer spec used (None for input-space methods).
        targets: the class index explained for each image (None for callable targets).
        target_names: their names.
        scores: (N,) the explained score of each image (a logit unless asked otherwise).
        output: (N, classes) the model's output, for predictions (None if the method made none).
        pixels: (N, H, W, 3) uint8 images the model saw (after resize/crop), for overlays.
        labels: a short name per image (file stems), used to name saved files.
        attributions: (N, C, H, W) per-channel input attributions, for methods that have them
            (guided backpropagation, integrated gradients, ...); None otherwise.
        meta: the model, method family, score, options, the method's ``extras`` (e.g. CAM
            weights) and, when several layers were fused, ``layer_maps``: each layer's raw map.
    """

    maps: torch.Tensor
    raw_maps: torch.Tensor
    method: str
    layer: str | None
    targets: list[int] | None
    target_names: list[str]
    scores: torch.Tensor
    output: torch.Tensor | None
    pixels: torch.Tensor | None
    labels: list[str]
    class_names: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    attributions: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.maps.shape[0]

    def __repr__(self) -> str:
        layer = f", layer={self.layer!r}" if self.layer else ""
        return (
            f"Explanation(method={self.method!r}{layer}, n={len(self)}, "
            f"maps={tuple(self.maps.shape)}, targets={self.target_names})"
        )

    # -- reading -------------------------------------------------------------------------------
    @property
    def display_norm(self) -> str:
        """How maps are scaled for display: ``"p99"`` for input-gradient maps, else ``"max"``."""
        return display_norm(self.meta.get("family"))

    def normalized(self, mode: str | None = None) -> torch.Tensor:
        """Maps scaled per image for display (see :func:`convscope.core.maps.normalize_maps`);
        the default is :attr:`display_norm`."""
        return normalize_maps(self.maps.detach(), mode or self.display_norm)

    def top_predictions(self, k: int = 5) -> list[list[tuple[int, str, float]]]:
        """Per image, the top-k classes as (index, name, softmax probability)."""
        if k < 0:
            from convscope.errors import ConvscopeError

            raise ConvscopeError(f"top_predictions takes k >= 0, not {k}")
        if self.output is None or self.output.ndim != 2:
            return [[] for _ in range(len(self))]
        probs = self.output.detach().float().softmax(dim=1)
        values, idx = probs.topk(min(k, probs.shape[1]), dim=1)
        return [
            [(int(i), self._name(int(i)), float(v)) for v, i in zip(vs, ids)]
            for vs, ids in zip(values.cpu(), idx.cpu())
        ]

    def _name(self, index: int) -> str:
        if self.class_names and 0 <= index < len(self.class_names):
            return self.class_names[index].split(",")[0].strip()
        return f"class {index}"

    # -- drawing -------------------------------------------------------------------------------
    def overlay(self, i: int = 0, cmap: str = "jet", alpha: float = 0.5) -> Image.Image:
        """Image ``i`` with its normalized map blended on top (the map alone if no image)."""
        from convscope.viz.render import overlay, to_pil

        heat = self.normalized()[i].clamp_min(0).cpu()
        pixels = None if self.pixels is None else self.pixels[i].cpu()
        return to_pil(overlay(pixels, heat, cmap, alpha))

    def heatmap(self, i: int = 0, cmap: str = "jet") -> Image.Image:
        """The normalized map of image ``i`` alone, colorized."""
        from convscope.viz.render import colorize, to_pil

        return to_pil(colorize(self.normalized()[i].clamp_min(0).cpu(), cmap))

    def files(self, raw: bool = False, cmap: str = "jet") -> dict[str, bytes]:
        """The files :meth:`save` writes: ``<label>_<method>.png`` (and ``.npy`` raw maps)."""
        import io

        import numpy as np

        from convscope.viz.render import png_bytes

        out: dict[str, bytes] = {}
        for i, label in enumerate(self.labels):
            stem = f"{label}_{self.method}"
            out[f"{stem}.png"] = png_bytes(self.overlay(i, cmap))
            if raw:
                buf = io.BytesIO()
                np.save(buf, self.maps[i].detach().float().cpu().numpy().astype(np.float32))
                out[f"{stem}.npy"] = buf.getvalue()
        return out

    def save(self, folder: str | os.PathLike, raw: bool = False, cmap: str = "jet") -> list[Path]:
        """Write one overlay PNG per image (and with ``raw`` the raw map as float32 .npy)."""
        from convscope.fileio import write_all

        return write_all(folder, self.files(raw=raw, cmap=cmap))

    def _repr_html_(self) -> str:
        from convscope.viz.render import png_data_uri

        cells = []
        preds = self.top_predictions(1)
        for i in range(len(self)):
            caption = f"{self.labels[i]}: {self.target_names[i]}"
            if preds[i]:
                caption += f" (top-1 {preds[i][0][1]}, {preds[i][0][2]:.0%})"
            cells.append(
                f'<figure style="display:inline-block;margin:4px">'
                f'<img src="{png_data_uri(self.overlay(i))}" width="224">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        head = html.escape(f"{self.method}" + (f" @ {self.layer}" if self.layer else ""))
        return f"<div><b>{head}</b><br>{''.join(cells)}</div>"


@dataclass
class Comparison:
    """Several methods run on the same images (:func:`convscope.compare`).

    Attributes:
        explanations: the :class:`Explanation` of each method that applied, by method name, in the
            order the methods were asked for.
        skipped: each method that cannot apply to the model, with the one-line reason.
        seconds: the wall time of each method that ran (the skipped ones until they gave up), the
            device synchronized before and after.
    """

    explanations: dict[str, Explanation] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def __repr__(self) -> str:
        skipped = f", skipped={sorted(self.skipped)}" if self.skipped else ""
        return f"Comparison(methods={list(self.explanations)}{skipped})"
