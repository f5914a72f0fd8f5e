"""From images to the model's input: decoding and the bundle's preprocessing, in one call."""

from __future__ import annotations

from typing import Any

import torch

from convscope.core.bundle import ModelBundle
from convscope.data.images import image_label, load_images
from convscope.errors import ImageError

__all__ = ["prepare_inputs"]


def prepare_inputs(
    bundle: ModelBundle, images: Any, *, pixels: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None, list[str]]:
    """Images -> (model input on the model's device, display pixels or None, labels).

    ``images`` may be one or a list of paths, ``"sample:NAME"`` strings, PIL images or numpy
    arrays (decoded and preprocessed by the bundle), or a tensor already preprocessed for the model:
    (C, H, W) or (N, C, H, W). ``pixels=False``: a caller that draws nothing skips undoing a
    tensor's normalization (None instead of its display pixels; ``bundle.pixels_of(x)`` makes them
    when they are needed).
    """
    if isinstance(images, torch.Tensor):
        x = images.unsqueeze(0) if images.ndim == 3 else images
        if x.ndim != 4 or not x.is_floating_point():
            raise ImageError(
                f"a tensor input must be a float (C, H, W) or (N, C, H, W) batch; got "
                f"{x.dtype} of shape {tuple(images.shape)}"
            )
        if x.shape[0] == 0:
            raise ImageError("no images given (empty batch)")
        device, dtype = bundle.placement()
        x = x.detach().to(device, dtype if x.is_floating_point() else x.dtype)
        if x.is_inference():  # made under torch.inference_mode(): a normal copy for autograd
            with torch.inference_mode(False):
                x = x.clone()
        shown = bundle.pixels_of(x) if pixels else None
        return x, shown, [f"image{i}" for i in range(x.shape[0])]
    pils = load_images(images)
    items = images if isinstance(images, list | tuple) else [images]
    labels = _unique([image_label(src, i) for i, src in enumerate(items)])
    with torch.inference_mode(False):  # model inputs autograd can use, whatever the mode
        x, pixels = bundle.prepare(pils)
        x = x.to(dtype=bundle.dtype)  # a half-precision model takes half inputs
    return x, pixels, labels


def _unique(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        n = seen.get(label, 0)
        seen[label] = n + 1
        out.append(label if n == 0 else f"{label}-{n}")
    return out
