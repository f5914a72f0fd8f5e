"""Branched test models for receptive fields, and the gradient probe that checks them."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


class BranchyNet(nn.Module):
    """Residual additions, a strided shortcut beside a padded 3x3 branch, a concatenation of a
    dilated convolution and a max pool, a depthwise convolution, a ceil-mode pool, a reflect-padded
    convolution, a reused rectifier (``act``) and functional calls, then a global gate and a head."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.stem = nn.Conv2d(3, 8, 5, stride=2, padding=2)
        self.act = nn.ReLU()
        self.a1 = nn.Conv2d(8, 8, 3, padding=1)
        self.a2 = nn.Conv2d(8, 8, 3, padding=1)
        self.short = nn.Conv2d(8, 8, 1, stride=2)
        self.down = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.dil = nn.Conv2d(8, 8, 3, padding=2, dilation=2)
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16)
        self.pool2 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.refl = nn.Conv2d(16, 16, 3, padding=1, padding_mode="reflect")
        self.fc = nn.Linear(16, 4)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.stem(x))
        x = x + self.a2(self.act(self.a1(x)))  # residual
        x = self.down(x) + self.short(x)  # two branches, one stride, different offsets
        x = torch.cat([self.dil(x), self.pool(x)], dim=1)
        x = self.act(x)  # third call of the reused rectifier
        x = self.dw(x)
        x = self.pool2(x)
        x = F.relu(self.refl(x))
        gate = torch.sigmoid(x.mean(dim=(2, 3), keepdim=True))
        x = x * gate
        return self.fc(x.mean(dim=(2, 3)))


def linear_positive_copy(model: nn.Module) -> nn.Module:
    """A float64 copy with every rectifier (and GELU, LayerNorm) an identity, every max pool the average pool of the same
    window, and every weight positive: then no path from the input to a unit cancels, and the
    support of the unit's input gradient is exactly the set of pixels it depends on."""
    m = copy.deepcopy(model).double()
    for name, mod in list(m.named_modules()):
        new = None
        if isinstance(
            mod, nn.ReLU | nn.ReLU6 | nn.Hardtanh | nn.LeakyReLU | nn.GELU | nn.LayerNorm
        ):
            new = nn.Identity()
        elif isinstance(mod, nn.MaxPool2d):
            assert mod.dilation in (1, (1, 1))
            new = nn.AvgPool2d(mod.kernel_size, mod.stride, mod.padding, mod.ceil_mode)
        if new is not None:
            parent = m.get_submodule(name.rpartition(".")[0]) if "." in name else m
            setattr(parent, name.rpartition(".")[2], new)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(p.abs() + 0.05)
    return m


def gradient_boxes(
    probe: nn.Module,
    layer: str,
    size: tuple[int, int],
    units: list[tuple[int, int]],
    call: int = 0,
    channels_last: bool = False,
) -> list[tuple[int, int, int, int]]:
    """(top, left, bottom, right) of the nonzero input gradient of each unit (i, j) of ``layer``
    (summed over its channels) in ``probe`` (see :func:`linear_positive_copy`); one forward."""
    outs: list[torch.Tensor] = []
    handle = probe.get_submodule(layer).register_forward_hook(lambda m, a, o: outs.append(o))
    try:
        x = torch.zeros(1, 3, *size, dtype=torch.float64, requires_grad=True)
        probe(x)
    finally:
        handle.remove()
    boxes = []
    for i, j in units:
        value = outs[call][0, i, j, :] if channels_last else outs[call][0, :, i, j]
        (g,) = torch.autograd.grad(value.sum(), x, retain_graph=True)
        nz = g[0].abs().sum(0) > 0
        rows = nz.any(1).nonzero()[:, 0]
        cols = nz.any(0).nonzero()[:, 0]
        if rows.numel() == 0:
            boxes.append((0, 0, 0, 0))
        else:
            boxes.append((int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1))
    return boxes


class ResampleNet(nn.Module):
    """Operators without one regular geometry: uneven adaptive pooling, nearest and bilinear
    upsampling, a transposed convolution, a cropping pad and a skip concatenation."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.bins = nn.AdaptiveAvgPool2d((5, 4))
        self.up = nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.c1(x)  # 9x8 on a 17x15 input
        b = self.bins(a)  # uneven bins
        b = F.interpolate(b, scale_factor=2, mode="nearest")  # 10x8
        b = F.interpolate(b, size=(9, 8), mode="bilinear", align_corners=False)
        b = self.up(b)  # transposed: 17x15
        b = F.pad(b, (0, 0, -1, 0))  # crop the first row: 16x15
        a2 = F.interpolate(a, size=(16, 15), mode="nearest")
        return self.c2(torch.cat([a2, b], dim=1))


class ChannelsLastNet(nn.Module):
    """A ConvNeXt-style block: a strided stem, a depthwise 7x7 convolution, then channels-last
    LayerNorm, Linear, GELU, Linear (which reshape the map to rows of pixels and back), a residual
    addition, and a patchifying 2x2 stride-2 convolution."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.stem = nn.Conv2d(3, 8, 2, stride=2)
        self.dw = nn.Conv2d(8, 8, 7, padding=3, groups=8)
        self.norm = nn.LayerNorm(8)
        self.fc1 = nn.Linear(8, 16)
        self.gelu = nn.GELU()
        self.fc2 = nn.Linear(16, 8)
        self.down = nn.Conv2d(8, 8, 2, stride=2)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.fc2(self.gelu(self.fc1(self.norm(y)))).permute(0, 3, 1, 2)
        return self.down(x + y)
