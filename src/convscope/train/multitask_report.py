"""Comparing the multi-task strategies from their training logs (no training here).

For each strategy (:data:`~convscope.train.trainer.STRATEGIES`), from the log of
:func:`~convscope.train.trainer.train_model`:

- **final accuracy** per task on the held-out images, and its mean over the tasks;
- **accuracy curves**: per task, held-out accuracy against the batches of examples seen (the same
  budget and the same images for every strategy);
- **training-loss noise** per task: the standard deviation, over the second half of the run, of the
  task's batch loss minus its running mean (a centred window of 21 of that task's batches), i.e.
  how much the loss jumps from one batch of that task to the next around its trend;
- **held-out jitter** per task: the mean absolute change of the held-out loss between consecutive
  evaluations in the second half (instability of the model itself, not of the batches);
- **gates** (``gated`` only): per task the smallest, mean and largest gate, per task and layer the
  share of channels whose gate is above 0.5, and the Jaccard overlap of the channel sets two tasks
  keep open.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["multitask_summary", "trim_log"]


def _noise(values: list[float], window: int = 21) -> float:
    v = torch.tensor(values, dtype=torch.float64)
    if v.numel() < window + 2:
        return float("nan")
    kernel = torch.ones(1, 1, window, dtype=torch.float64) / window
    trend = torch.nn.functional.conv1d(v.view(1, 1, -1), kernel).flatten()
    half = window // 2
    resid = v[half : half + trend.numel()] - trend
    return float(resid.std())


def multitask_summary(logs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per strategy: ``final`` (task -> accuracy), ``mean_final``, ``curves`` (``batches`` and
    task -> accuracies), ``loss_noise`` and ``heldout_jitter`` (task -> value), and for gated runs
    ``gates`` ((tasks, layers, channels) nested lists), ``gate_range`` (task -> [min, mean, max]),
    ``open_share`` (task -> [share per layer])
    and ``overlap`` (task -> task -> Jaccard overlap of the open channels of the last layer)."""
    out: dict[str, dict[str, Any]] = {}
    for strategy, log in logs.items():
        evals = log["eval"]
        tasks = list(evals[-1]["accuracy"])
        final = dict(evals[-1]["accuracy"])
        curves = {
            "batches": [e.get("batches", e["step"]) for e in evals],
            **{t: [e["accuracy"][t] for e in evals] for t in tasks},
        }
        records = log["train"]
        second = records[len(records) // 2 :]
        noise = {t: _noise([r["losses"][t] for r in second if t in r["losses"]]) for t in tasks}
        late = evals[len(evals) // 2 :]
        jitter = {
            t: float(
                torch.tensor([b["loss"][t] - a["loss"][t] for a, b in zip(late, late[1:])])
                .abs()
                .mean()
            )
            if len(late) > 1
            else float("nan")
            for t in tasks
        }
        entry: dict[str, Any] = {
            "final": final,
            "mean_final": sum(final.values()) / len(final),
            "curves": curves,
            "loss_noise": noise,
            "heldout_jitter": jitter,
        }
        gates = evals[-1].get("gates")
        if gates is not None:
            g = torch.tensor(gates)  # (tasks, layers, channels)
            opened = g > 0.5
            entry["gates"] = gates
            entry["gate_range"] = {
                t: [float(g[i].min()), float(g[i].mean()), float(g[i].max())]
                for i, t in enumerate(tasks)
            }
            entry["open_share"] = {
                t: opened[i].float().mean(dim=1).tolist() for i, t in enumerate(tasks)
            }
            last = opened[:, -1]
            inter = (last.unsqueeze(0) & last.unsqueeze(1)).sum(-1).float()
            union = (last.unsqueeze(0) | last.unsqueeze(1)).sum(-1).float().clamp_min(1)
            jac = inter / union
            entry["overlap"] = {
                t: {u: float(jac[i, j]) for j, u in enumerate(tasks)} for i, t in enumerate(tasks)
            }
        out[strategy] = entry
    return out


def trim_log(log: Mapping[str, Any], digits: int = 4) -> dict[str, Any]:
    """A log with its floats rounded (to ship it small)."""

    def r(x: Any) -> Any:
        if isinstance(x, float):
            return round(x, digits)
        if isinstance(x, dict):
            return {k: r(v) for k, v in x.items()}
        if isinstance(x, list):
            return [r(v) for v in x]
        return x

    return r(dict(log))
