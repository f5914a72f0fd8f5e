"""What the metrics share: the model and its inputs, maps checked against them, class targets,
and the model's probabilities in batched forwards."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from convscope.core.bundle import ModelBundle
from convscope.core.outputs import not_a_tensor
from convscope.core.targets import TargetSpec, resolve_targets
from convscope.errors import ConvscopeError
from convscope.result import Explanation

__all__ = ["bundle_of", "check_steps", "checked_maps", "class_targets", "probabilities"]


def bundle_of(model: Any) -> tuple[ModelBundle, bool]:
    """(bundle, whether its preprocessing is known): a bare ``nn.Module`` gets the default
    Preprocess from :func:`load_model`, which is a guess, so its inputs' black level is unknown."""
    from convscope.models import load_model

    return load_model(model), not isinstance(model, nn.Module)


def checked_maps(maps: torch.Tensor | Explanation, x: torch.Tensor) -> torch.Tensor:
    """Check (N, H, W) maps against an (N, C, H, W) batch; return them as float on x's device."""
    m = maps.maps if isinstance(maps, Explanation) else maps
    if not isinstance(m, torch.Tensor):
        m = torch.as_tensor(m)
    want = (x.shape[0], *x.shape[-2:])
    if m.ndim != 3 or tuple(m.shape) != want:
        raise ConvscopeError(
            f"maps must have shape (N, H, W) = {want} to match the images; got {tuple(m.shape)}"
        )
    m = m.detach().to(x.device, torch.float32)
    if not torch.isfinite(m).all():
        raise ConvscopeError("maps contain NaN or infinite values")
    return m


def check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConvscopeError(f"steps must be an integer of at least 1, not {steps!r}")


def probabilities(model: nn.Module, x: torch.Tensor, batch_size: int | None) -> torch.Tensor:
    """(N, classes) softmax probabilities, in batches, under no_grad (the caller holds preserved)."""
    step = batch_size or x.shape[0]
    outs = []
    with torch.no_grad():
        for s in range(0, x.shape[0], step):
            out = model(x[s : s + step])
            if not isinstance(out, torch.Tensor):
                raise not_a_tensor(out)
            if out.ndim != 2:
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ConvscopeError(
                    f"faithfulness metrics need a model output of shape (N, classes); got {shape}"
                )
            outs.append(out.float().softmax(dim=1))
    return torch.cat(outs)


def class_targets(
    bundle: ModelBundle,
    target: TargetSpec,
    maps: torch.Tensor | Explanation,
    probs: torch.Tensor,
) -> torch.Tensor:
    """(N,) class indices: ``target`` resolved on the original output, or the Explanation's."""
    n = probs.shape[0]
    if target is None:
        if isinstance(maps, Explanation):
            if maps.targets is None:
                raise ConvscopeError(
                    "the explanation has a callable target; these metrics need class targets"
                )
            target = list(maps.targets)
        else:
            target = "top1"
    if callable(target) and not isinstance(target, str | int):
        raise ConvscopeError("these metrics need class targets (an index, a name or topK)")
    tgt = resolve_targets(target, n, bundle.class_names)
    tgt.scores(probs)  # fills tgt.indices (rank targets from the original output)
    return tgt.indices
