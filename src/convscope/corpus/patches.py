"""Patches: the part of an input image a neuron of a layer sees (its receptive field).

The boxes come from :func:`convscope.receptive_field` (the "Inside the network" capability, exact
receptive fields); this module only asks it for the boxes of mined positions and cuts them out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["boxes_of", "crop"]


def boxes_of(
    model: Any, layer: str, positions: torch.Tensor, input_size: tuple[int, int]
) -> torch.Tensor | None:
    """(..., 4) int64 boxes (top, left, bottom, right; half-open, clipped to the input) of the
    (..., 2) ``positions`` (row, column) of ``layer``'s map, or None when the receptive field of
    the layer cannot be computed here."""
    import convscope

    try:
        receptive_field = convscope.receptive_field
    except AttributeError:  # the receptive-field capability is not part of this install
        return None
    flat = positions.reshape(-1, 2)
    if flat.numel() == 0:
        return torch.empty(*positions.shape[:-1], 4, dtype=torch.int64)
    rf = receptive_field(model, layer, input_size=tuple(input_size))
    boxes = torch.as_tensor(rf.boxes(flat), dtype=torch.int64)
    return boxes.reshape(*positions.shape[:-1], 4)


def crop(pixels: np.ndarray, box: Any) -> np.ndarray:
    """The (h, w, 3) part of an (H, W, 3) image inside ``box`` (top, left, bottom, right)."""
    top, left, bottom, right = (int(v) for v in box)
    h, w = pixels.shape[:2]
    return pixels[max(0, top) : min(h, bottom), max(0, left) : min(w, right)]
