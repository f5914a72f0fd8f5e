"""The shapes-world models convscope trains itself (``convscope train``), and their shipped weights.

- :class:`ShapesCNN` (``shapes-cnn``): 64 x 64 RGB -> the 10 shape classes; a first layer of 16
  large 11 x 11 kernels (stride 4, as AlexNet's first layer), two 3 x 3 layers, global average
  pooling and one linear layer (so CAM applies).
- :class:`SoftmaxRegression` (``softmax-regression``): 28 x 28 grayscale -> 10 classes, one linear
  layer (lecture 004's "two-layer network": its weight rows are class templates).
- :class:`MLP` (``mlp``): 28 x 28 grayscale -> 300 ReLU hidden units -> 10 classes.
- :class:`MultiTaskNet` (``multitask``): one trunk, a head per task of the shapes world, and
  optionally a learned per-task gate on the trunk's channels (task gating).

The first three ship as bundles (``convscope models``) with weights in ``shapes_weights/`` (float32
safetensors) and the logs of the runs that made them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from typing import Any

import torch
from PIL import Image
from torch import nn

from convscope.errors import ModelError

__all__ = [
    "MLP",
    "SHIPPED",
    "GrayPreprocess",
    "MultiTaskNet",
    "ShapesCNN",
    "SoftmaxRegression",
    "shapes_bundle",
    "shipped_log",
]


class ShapesCNN(nn.Module):
    """conv 11x11 stride 4 (16, as AlexNet's first layer) -> ReLU -> conv 3x3 (32) -> BatchNorm ->
    ReLU -> conv 3x3 (64) -> BatchNorm -> ReLU -> global average pool -> linear (10).

    Input: (N, 3, 64, 64) RGB in [0, 1] (the model centres the pixels itself). Every feature map
    after the first layer is 16 x 16, one unit per 4-pixel cell; ``relu3`` (the CAM layer) sees
    27 x 27 pixels. An earlier version max-pooled to 8 x 8 before the last convolution (39-pixel
    receptive fields): its Grad-CAM maximum at relu3 fell beside small shapes, one 8-pixel cell
    off, in a quarter of the single-shape images (pointing game 0.75); with a dilated last
    convolution instead of the pool (16 x 16, 35 pixels) 0.92-0.96; this one 0.97-1.0
    (benchmarks/README.md, "shapes-cnn's CAM layer").
    """

    def __init__(self, classes: int = 10, width: int = 16, kernel: int = 11) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel, stride=4, padding=kernel // 2)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(2 * width, 4 * width, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(4 * width)
        self.relu3 = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.conv1(x - 0.5))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.relu3(self.bn3(self.conv3(x)))
        return self.fc(self.gap(x).flatten(1))


class SoftmaxRegression(nn.Module):
    """Flatten -> linear: one template per class (its weight row) plus a bias. Input (N, 1, 28, 28)."""

    def __init__(self, classes: int = 10, pixels: int = 28 * 28) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(pixels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(x))


class MLP(nn.Module):
    """Flatten -> linear (300 hidden units) -> ReLU -> linear (10). Input (N, 1, 28, 28)."""

    def __init__(self, classes: int = 10, hidden: int = 300, pixels: int = 28 * 28) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.hidden = nn.Linear(pixels, hidden)
        self.relu = nn.ReLU()
        self.out = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.relu(self.hidden(self.flatten(x))))


class MultiTaskNet(nn.Module):
    """A shared trunk (conv 5x5 (16) -> pool -> conv 3x3 (32) -> pool -> conv 3x3 (32) -> 2x2
    average pool) and one linear head per task. With ``gated``, each task ``t`` has a learned gate
    ``sigmoid(g_t)`` in (0, 1) per channel of the trunk's second and third layers, multiplied into
    those channels when the network runs for task ``t`` (task gating: each task can switch off the
    channels it does not use, so tasks interfere less).

    ``forward(x, task)`` returns the logits of ``task`` (a name or an index of ``tasks``).
    """

    def __init__(self, tasks: dict[str, int], width: int = 16, gated: bool = False) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.conv1 = nn.Conv2d(3, width, 5, padding=2)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.conv3 = nn.Conv2d(2 * width, 2 * width, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.relu = nn.ReLU()
        self.spatial = nn.AdaptiveAvgPool2d(2)  # keeps where things are: quadrant, count
        self.heads = nn.ModuleDict({t: nn.Linear(2 * width * 4, k) for t, k in tasks.items()})
        self.gates = nn.Parameter(torch.full((len(tasks), 2, 2 * width), 2.0)) if gated else None

    def gate_values(self) -> torch.Tensor | None:
        """(tasks, 2 layers, channels) gates in (0, 1), or None without gating."""
        return None if self.gates is None else torch.sigmoid(self.gates)

    def forward(self, x: torch.Tensor, task: str | int) -> torch.Tensor:
        t = self.tasks.index(task) if isinstance(task, str) else int(task)
        x = self.pool(self.relu(self.conv1(x - 0.5)))
        x = self.relu(self.conv2(x))
        if self.gates is not None:
            x = x * torch.sigmoid(self.gates[t, 0]).view(1, -1, 1, 1)
        x = self.relu(self.conv3(self.pool(x)))
        if self.gates is not None:
            x = x * torch.sigmoid(self.gates[t, 1]).view(1, -1, 1, 1)
        return self.heads[self.tasks[t]](self.spatial(x).flatten(1))


class GrayPreprocess:
    """PIL image -> (1, size, size) grayscale tensor in [0, 1] (luminance, bilinear resize)."""

    def __init__(self, size: int = 28) -> None:
        self.size = size

    def __call__(self, image: Image.Image) -> torch.Tensor:
        g = image.convert("L").resize((self.size, self.size), Image.BILINEAR)
        return (
            torch.frombuffer(bytearray(g.tobytes()), dtype=torch.uint8)
            .view(1, self.size, self.size)
            .float()
            / 255
        )

    def __repr__(self) -> str:
        return f"GrayPreprocess(size={self.size})"


# name -> architecture; the weights are shapes_weights/<name>.safetensors (descriptions: models/)
SHIPPED: dict[str, type[nn.Module]] = {
    "shapes-cnn": ShapesCNN,
    "softmax-regression": SoftmaxRegression,
    "mlp": MLP,
}


def _weights_dir():
    return resources.files("convscope.models").joinpath("shapes_weights")


def shipped_log(name: str) -> dict[str, Any]:
    """The log of the training run that made a shipped model (``shapes_weights/<name>.json``)."""
    path = _weights_dir().joinpath(f"{name}.json")
    if not path.is_file():
        raise ModelError(f"no shipped training log {name!r}")
    return json.loads(path.read_text())


def state_from_safetensors(data: bytes) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and the ``__metadata__`` strings of a safetensors file's bytes."""
    import struct

    from safetensors.torch import load

    try:
        tensors = load(data)
        (n,) = struct.unpack("<Q", data[:8])
        meta = json.loads(data[8 : 8 + n]).get("__metadata__") or {}
    except Exception as e:
        raise ModelError(f"not a safetensors file: {e}") from None
    return tensors, meta


def shapes_bundle(name: str, class_names: Sequence[str] | None = None):
    """The shipped model ``name`` (a key of :data:`SHIPPED`) as a ModelBundle."""
    from convscope.core.bundle import ModelBundle, Preprocess
    from convscope.data.shapes import SHAPES

    arch = SHIPPED[name]
    data = _weights_dir().joinpath(f"{name}.safetensors").read_bytes()
    tensors, meta = state_from_safetensors(data)
    model = arch()
    model.load_state_dict(tensors)
    model.eval()
    if name == "shapes-cnn":
        pre: Any = Preprocess(resize=64, crop=64, mean=(0.0,) * 3, std=(1.0,) * 3, scale=1 / 255)
        layer, size = "relu3", 64
    else:
        pre, layer, size = GrayPreprocess(28), None, 28
    return ModelBundle(
        model=model,
        name=name,
        preprocess=pre,
        class_names=list(class_names or SHAPES),
        default_layer=layer,
        meta={"source": f"convscope train {name}", "input_size": size, **meta},
    )
