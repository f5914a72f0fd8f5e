"""Training checkpoints as safetensors: the model's and the optimizer's tensors, and a JSON header.

A checkpoint holds ``model.<name>`` for every entry of the model's state dict, ``optim.<i>.<key>``
for every tensor of the optimizer's per-parameter state (Adam's step, exp_avg, exp_avg_sq), and in
the safetensors metadata ``convscope`` (JSON: the run's model, options, step and log so far) and
``param_groups`` (the optimizer's hyper-parameters). Files are written all-or-nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from convscope.errors import ConvscopeError

__all__ = ["CheckpointError", "load_checkpoint", "pack_checkpoint", "restore"]


class CheckpointError(ConvscopeError):
    """A checkpoint is missing, unreadable, of another model, or of a run with other options."""


def pack_checkpoint(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, meta: dict[str, Any]
) -> bytes:
    """The bytes of a checkpoint of ``model`` and ``optimizer`` with ``meta`` (JSON-able)."""
    from safetensors.torch import save

    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    state = optimizer.state_dict()
    for i, st in state["state"].items():
        for key, value in st.items():
            t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"optim.{i}.{key}"] = t.detach().contiguous()
    metadata = {"convscope": json.dumps(meta), "param_groups": json.dumps(state["param_groups"])}
    return save(tensors, metadata=metadata)


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, meta) of a checkpoint file; :class:`CheckpointError` if it is not one."""
    from convscope.models.shapes import state_from_safetensors

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"no checkpoint at {p}")
    try:
        tensors, raw = state_from_safetensors(p.read_bytes())
        meta = json.loads(raw["convscope"])
        meta["param_groups"] = json.loads(raw["param_groups"])
    except (ConvscopeError, KeyError, ValueError) as e:
        raise CheckpointError(f"{p} is not a convscope training checkpoint ({e})") from None
    return tensors, meta


def restore(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    tensors: dict[str, torch.Tensor],
    param_groups: list[dict[str, Any]],
) -> None:
    """Load a checkpoint's tensors into ``model`` and ``optimizer``."""
    own = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(own)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"the checkpoint does not fit this model: {first}") from None
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, i, key = k.split(".", 2)
            state.setdefault(int(i), {})[key] = v
    optimizer.load_state_dict({"state": state, "param_groups": param_groups})
