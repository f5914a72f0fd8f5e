"""Model bundles: a model with what it takes to use it on images.

A :class:`ModelBundle` holds the ``nn.Module``, its preprocessing, its class names and a default
layer for class-activation maps. :func:`convscope.load_model` makes one from a registered name, a
``torchvision:``/``timm:`` name, a TorchScript file or any ``nn.Module``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ModelBundle", "Preprocess"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to ``resize`` (bilinear), center-crop ``crop`` x ``crop``, then
    normalize each channel: ``(pixel * scale - mean) / std`` with pixels in 0..255.

    EfficientNet-Lite0: ``scale=1, mean=127, std=128``; torchvision's ImageNet models:
    ``scale=1/255`` with the ImageNet mean and std.
    """

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    scale: float = 1 / 255

    def geometry(self, image: Image.Image, resample: int = Image.BILINEAR) -> Image.Image:
        """The resized and cropped RGB image the model sees (before normalization); masks and
        labels go through the same geometry with ``resample=Image.NEAREST``."""
        w, h = image.size
        s = self.resize / min(w, h)
        nw, nh = max(self.crop, round(w * s)), max(self.crop, round(h * s))
        image = image.resize((nw, nh), resample)
        left, top = (nw - self.crop) // 2, (nh - self.crop) // 2
        return image.crop((left, top, left + self.crop, top + self.crop))

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 pixels -> (N, 3, H, W) float model input."""
        x = pixels.permute(0, 3, 1, 2).float()
        mean, std = _channel_constants(self.mean, self.std, x.device)
        return (x * self.scale - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) model input -> (N, H, W, 3) uint8 pixels (the inverse of normalize)."""
        mean, std = _channel_constants(self.mean, self.std, x.device)
        pixels = (x.detach().float() * std + mean) / self.scale
        return pixels.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


@functools.lru_cache(maxsize=32)
def _channel_constants(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 3, 1, 1) mean and std on ``device``, made once: a host-to-device copy on every call
    would wait for the device. Made outside inference mode, so that autograd may save them."""
    with torch.inference_mode(False):
        return (
            torch.tensor(mean, device=device).view(1, 3, 1, 1),
            torch.tensor(std, device=device).view(1, 3, 1, 1),
        )


@dataclass
class ModelBundle:
    """A model and what it takes to explain it.

    Attributes:
        model: the network; convscope never changes it.
        name: a display name.
        preprocess: a :class:`Preprocess`, or a callable PIL image -> (C, H, W) tensor.
        class_names: one name per output class (synonyms separated by ", "), or None.
        default_layer: the layer class-activation methods use when ``layer="auto"``; None means
            "find it" (the last 4-D feature map before global pooling).
        output: for a model whose output is not one tensor, which part is the logits: an index,
            a key or attribute name, or a callable (see :mod:`convscope.core.outputs`).
        meta: anything else known of the model, e.g. ``"cheaper_layers"``: for methods whose
            cost grows with their layer's channels (Score-CAM), ``{method: (layer, why)}``, a
            layer where they are affordable (the demo page runs them there).
    """

    model: nn.Module
    name: str = "model"
    preprocess: Preprocess | Callable[[Image.Image], torch.Tensor] = field(
        default_factory=Preprocess
    )
    class_names: list[str] | None = None
    default_layer: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    output: int | str | Callable[[Any], torch.Tensor] | None = None
    # the layer "auto" found for an input of a given (shape, dtype, device): name and module
    _auto_layers: dict[Any, tuple[str, nn.Module]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def device(self) -> torch.device:
        for p in self.model.parameters():
            return p.device
        for b in self.model.buffers():
            return b.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype of the model's parameters (float32 when it has none): inputs are
        cast to it (a float16 or bfloat16 model gets float16 or bfloat16 inputs)."""
        return self.placement()[1]

    def placement(self) -> tuple[torch.device, torch.dtype]:
        """(:attr:`device`, :attr:`dtype`) from one look at the parameters."""
        for p in self.model.parameters():
            return p.device, p.dtype if p.is_floating_point() else torch.float32
        for b in self.model.buffers():
            return b.device, torch.float32
        return torch.device("cpu"), torch.float32

    def class_name(self, index: int) -> str:
        """The short name of class ``index`` (its first synonym), or ``"class <index>"``."""
        if self.class_names is None or not 0 <= index < len(self.class_names):
            return f"class {index}"
        return self.class_names[index].split(",")[0].strip()

    def prepare(self, images: Sequence[Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
        """PIL images -> (model input batch on the model's device, (N, H, W, 3) uint8 pixels)."""
        if isinstance(self.preprocess, Preprocess):
            arrays = [np.asarray(self.preprocess.geometry(im), dtype=np.uint8) for im in images]
            pixels = torch.from_numpy(np.stack(arrays)).to(self.device)
            return self.preprocess.normalize(pixels), pixels
        xs = [self.preprocess(im) for im in images]
        if not all(isinstance(x, torch.Tensor) and x.ndim == 3 for x in xs):
            raise TypeError("a custom preprocess must return a (C, H, W) tensor per image")
        x = torch.stack(xs).to(self.device)
        h, w = x.shape[-2:]
        pixels = np.stack([np.asarray(im.resize((w, h), Image.BILINEAR)) for im in images])
        return x, torch.from_numpy(pixels).to(self.device)

    def pixels_of(self, x: torch.Tensor) -> torch.Tensor | None:
        """Pixels to draw overlays on for a batch given as a tensor (None if not invertible)."""
        if isinstance(self.preprocess, Preprocess) and x.ndim == 4 and x.shape[1] == 3:
            return self.preprocess.denormalize(x)
        return None
