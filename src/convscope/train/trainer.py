"""Training the shapes-world models: seeded, deterministic on a CPU, resumable.

Every run is defined by its :class:`Recipe` and options (seed, batch size, learning rate, L2,
strategy). The data are the shapes world of the run's seed: training step ``s`` sees the images
``s * batch .. (s + 1) * batch - 1`` (a pure function of the seed and the index, see
:mod:`convscope.data.shapes`), the held-out set is another world (seed + 1,000,003). The weights
are initialized from the seed, Adam has no randomness, the random task of a multi-task step is a
hash of the seed and the step, and the run uses deterministic algorithms: so a run resumed from a
checkpoint ends bit for bit where the uninterrupted run ends (tested).

Multi-task training (lecture 000: each example carries the label of one task only). The budget is
counted in batches of ``batch_size`` examples, the same images for every strategy:

- ``accumulate``: each update takes one batch per task (task ``t`` labels batch ``u * T + t``), sums
  the tasks' losses and updates once (method one of the notes).
- ``random``: each update takes one batch (batch ``u``) with one task drawn at random (method two:
  "easier, but can cause instability").
- ``gated``: as ``random``, on a network with a learned per-task gate on the trunk's channels
  (:class:`~convscope.models.shapes.MultiTaskNet`).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from convscope.data.shapes import GRAY28, SHAPES, TASKS, _hash32, generate, generate_indices
from convscope.errors import ConvscopeError, did_you_mean
from convscope.train.checkpoint import CheckpointError, load_checkpoint, pack_checkpoint, restore

__all__ = ["RECIPES", "STRATEGIES", "Recipe", "TrainRun", "train_model"]

STRATEGIES = ("accumulate", "random", "gated")
HELD_OUT = 1_000_003  # the held-out world is seed + HELD_OUT


@dataclass(frozen=True)
class Recipe:
    """How a model is trained: its data, budget and optimizer."""

    name: str
    steps: int
    batch_size: int
    lr: float
    l2: float  # lambda of the penalty lambda * sum of squared weights (biases excluded)
    data: dict[str, Any]
    eval_every: int
    eval_size: int
    checkpoint_every: int = 100
    small_init: float | None = None  # std of the first layer's initial weights (AlexNet: 0.01)


RECIPES: dict[str, Recipe] = {
    "shapes-cnn": Recipe(
        "shapes-cnn",
        steps=4000,
        batch_size=64,
        lr=3e-3,
        l2=1e-4,
        data={"size": 64, "count": 1},
        eval_every=250,
        eval_size=1000,
        small_init=0.01,
    ),
    "softmax-regression": Recipe(
        "softmax-regression",
        steps=1500,
        batch_size=128,
        lr=3e-3,
        l2=1e-3,
        data=dict(GRAY28),
        eval_every=250,
        eval_size=2000,
    ),
    "mlp": Recipe(
        "mlp",
        steps=1000,
        batch_size=128,
        lr=1e-3,
        l2=1e-4,
        data=dict(GRAY28),
        eval_every=250,
        eval_size=2000,
    ),
    "multitask": Recipe(
        "multitask",
        steps=2500,  # batches of batch_size examples, the same budget for every strategy
        batch_size=32,
        lr=2e-3,
        l2=0.0,
        data={"size": 32, "count": (1, 3), "radius": (0.25, 0.45)},
        eval_every=50,  # batches
        eval_size=1000,
        checkpoint_every=250,
    ),
}


@dataclass
class TrainRun:
    """A finished (or resumed and finished) run: the trained model and its log."""

    name: str
    model: nn.Module
    log: dict[str, Any]
    files: list[Path] = field(default_factory=list)


def _make_model(name: str, strategy: str | None, seed: int) -> nn.Module:
    from convscope.models.shapes import MLP, MultiTaskNet, ShapesCNN, SoftmaxRegression

    recipe = RECIPES[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name == "shapes-cnn":
            model: nn.Module = ShapesCNN()
            with torch.no_grad():
                model.conv1.weight.normal_(0, recipe.small_init or 0.01)
                model.conv1.bias.zero_()
        elif name == "softmax-regression":
            model = SoftmaxRegression()
        elif name == "mlp":
            model = MLP()
        else:
            tasks = {t: len(v) for t, v in TASKS.items()}
            model = MultiTaskNet(tasks, gated=strategy == "gated")
    return model


def _l2(model: nn.Module) -> torch.Tensor:
    return sum((p.pow(2).sum() for n, p in model.named_parameters() if n.endswith("weight")), 0.0)


@contextlib.contextmanager
def _deterministic() -> Iterator[None]:
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def _options(name: str, recipe: Recipe, strategy, seed, batch_size, lr) -> dict[str, Any]:
    return {
        "model": name,
        "strategy": strategy,
        "seed": seed,
        "batch_size": batch_size,
        "lr": lr,
        "l2": recipe.l2,
        "data": json.loads(json.dumps(recipe.data)),
    }


def _check(name: str, strategy: str | None, steps: Any, seed: Any, batch_size: Any) -> None:
    if name not in RECIPES:
        raise ConvscopeError(
            f"unknown model {name!r}{did_you_mean(name, RECIPES)}; trainable: {', '.join(RECIPES)}"
        )
    if name == "multitask":
        if strategy not in STRATEGIES:
            raise ConvscopeError(
                f"multitask needs a strategy: {', '.join(STRATEGIES)} (got {strategy!r})"
            )
    elif strategy is not None:
        raise ConvscopeError(f"--strategy applies to multitask only, not {name}")
    for label, v in (("steps", steps), ("batch_size", batch_size)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ConvscopeError(f"{label} must be a positive integer, not {v!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise ConvscopeError(f"seed must be an integer in [0, 2**31), not {seed!r}")


def train_model(
    name: str,
    *,
    strategy: str | None = None,
    steps: int | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    lr: float | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    eval_every: int | None = None,
    eval_size: int | None = None,
) -> TrainRun:
    """Train ``name`` (a key of :data:`RECIPES`) and return the model with its log.

    With ``out``, a checkpoint (``checkpoint.safetensors``) is written every few steps and at the
    end, with the weights alone (``<name>.safetensors``, float32, class names in the metadata) and
    the log (``<name>.json``). ``resume=True`` continues the checkpoint in ``out`` (which must be of
    the same model and options; ``steps`` may grow); without it, an existing checkpoint there is
    an error, never overwritten.
    """
    _check(name, strategy, steps, seed, batch_size)
    recipe = RECIPES[name]
    steps = steps or recipe.steps
    batch_size = batch_size or recipe.batch_size
    lr = float(lr if lr is not None else recipe.lr)
    every = eval_every or recipe.eval_every
    n_eval = eval_size or recipe.eval_size
    options = _options(name, recipe, strategy, seed, batch_size, lr)
    tag = name if strategy is None else f"{name}-{strategy}"
    ckpt = Path(out) / "checkpoint.safetensors" if out is not None else None

    model = _make_model(name, strategy, seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    log: dict[str, Any] = {"model": name, "options": options, "train": [], "eval": []}
    start = 0
    if resume:
        if ckpt is None:
            raise CheckpointError("resume needs the output folder of the run (out=...)")
        tensors, meta = load_checkpoint(ckpt)
        if meta.get("model") != name:
            raise CheckpointError(f"{ckpt} is a checkpoint of {meta.get('model')!r}, not {name!r}")
        if meta.get("options") != options:
            diff = [
                f"{k} {meta['options'].get(k)!r} != {options[k]!r}"
                for k in options
                if meta["options"].get(k) != options[k]
            ]
            raise CheckpointError(f"cannot resume {ckpt} with different options: {'; '.join(diff)}")
        start = int(meta["step"])
        restore(model, optimizer, tensors, meta["param_groups"])
        log = meta["log"]
    elif ckpt is not None and ckpt.exists():
        raise CheckpointError(
            f"{ckpt} exists: pass --resume to continue it, or another output folder"
        )

    # multi-task budgets count batches: an accumulate update takes one batch per task
    per_update = len(TASKS) if strategy == "accumulate" else 1
    updates = max(1, steps // per_update)
    every = max(1, every // per_update)
    if start >= updates:
        raise CheckpointError(f"{ckpt} is already at step {start}; pass more than {start} steps")
    held = generate(n_eval, seed + HELD_OUT, **recipe.data)
    if name == "shapes-cnn" and start == 0:
        from convscope.metrics.filters import filter_structure

        fs = filter_structure(model.conv1.weight)
        log["filters_init"] = {
            "oriented_fraction": fs.oriented_fraction,
            "mean_low_frequency": fs.mean_low_frequency,
        }

    from tqdm.auto import tqdm

    began = time.perf_counter()
    files: list[Path] = []
    bar = tqdm(total=updates, initial=start, desc=f"train {tag}", disable=not progress, unit="step")
    with _deterministic():
        model.train()
        for step in range(start, updates):
            if name == "multitask":
                loss, record = _multitask_step(model, recipe, options, step)
            else:
                loss, record = _single_step(model, recipe, options, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            log["train"].append(record)
            done = step + 1
            if done % every == 0 or done == updates:
                model.eval()
                with torch.no_grad():
                    entry = {"step": done, "batches": done * per_update}
                    log["eval"].append({**entry, **_evaluate(model, name, held)})
                model.train()
            if step % 10 == 0 or done == updates:
                post = {"loss": f"{record['loss']:.3f}"}
                if log["eval"]:
                    post["held-out acc"] = _acc_text(log["eval"][-1])
                bar.set_postfix(post)
            bar.update(1)
            if ckpt is not None and (done % recipe.checkpoint_every == 0 or done == updates):
                log["seconds"] = log.get("seconds", 0.0) + time.perf_counter() - began
                began = time.perf_counter()
                files = _save(Path(out), tag, model, optimizer, options, done, log)
    bar.close()
    model.eval()
    if out is None:
        log["seconds"] = log.get("seconds", 0.0) + time.perf_counter() - began
    if name == "shapes-cnn":
        from convscope.metrics.filters import filter_structure

        fs = filter_structure(model.conv1.weight)
        log["filters_trained"] = {
            "oriented_fraction": fs.oriented_fraction,
            "mean_low_frequency": fs.mean_low_frequency,
        }
        if ckpt is not None:
            files = _save(Path(out), tag, model, optimizer, options, updates, log)
    return TrainRun(tag, model, log, files)


def _acc_text(entry: dict[str, Any]) -> str:
    acc = entry["accuracy"]
    if isinstance(acc, dict):
        return " ".join(f"{t[:2]}={v:.2f}" for t, v in acc.items())
    return f"{acc:.3f}"


def _single_step(model, recipe: Recipe, options, step: int):
    b = options["batch_size"]
    batch = generate(b, options["seed"], start=step * b, **recipe.data)
    logits = model(batch.images)
    target = batch.labels["shape"]
    ce = nn.functional.cross_entropy(logits, target)
    loss = ce + recipe.l2 * _l2(model) if recipe.l2 else ce
    acc = float((logits.argmax(1) == target).float().mean())
    return loss, {"loss": float(ce.detach()), "acc": acc}


def _multitask_step(model, recipe: Recipe, options, step: int):
    tasks = list(TASKS)
    b, seed = options["batch_size"], options["seed"]
    if options["strategy"] == "accumulate":
        batches = [(step * len(tasks) + i, t) for i, t in enumerate(tasks)]
    else:
        key = torch.tensor(step, dtype=torch.int64) ^ _hash32(torch.tensor(seed + 77))
        pick = int(_hash32(key)) % len(tasks)
        batches = [(step, tasks[pick])]
    total = 0.0
    record: dict[str, Any] = {"losses": {}}
    for j, task in batches:
        data = generate(b, seed, start=j * b, **recipe.data)
        ce = nn.functional.cross_entropy(model(data.images, task), data.labels[task])
        total = total + ce
        record["losses"][task] = float(ce.detach())
    record["loss"] = float(total.detach()) / len(batches)
    return total, record


def _evaluate(model, name: str, held) -> dict[str, Any]:
    if name != "multitask":
        logits = model(held.images)
        target = held.labels["shape"]
        return {
            "accuracy": float((logits.argmax(1) == target).float().mean()),
            "loss": float(nn.functional.cross_entropy(logits, target)),
        }
    acc, loss = {}, {}
    for task in TASKS:
        logits = model(held.images, task)
        acc[task] = float((logits.argmax(1) == held.labels[task]).float().mean())
        loss[task] = float(nn.functional.cross_entropy(logits, held.labels[task]))
    out: dict[str, Any] = {"accuracy": acc, "loss": loss}
    gates = model.gate_values()
    if gates is not None:
        out["gates"] = [[[round(float(v), 4) for v in layer] for layer in t] for t in gates]
    return out


def _save(folder: Path, tag, model, optimizer, options, step, log) -> list[Path]:
    from safetensors.torch import save

    from convscope.fileio import write_all

    meta = {"model": options["model"], "options": options, "step": step, "log": log}
    weights = save(
        {
            k: (v.float() if v.is_floating_point() else v).detach().contiguous()
            for k, v in model.state_dict().items()
        },
        metadata={
            "model": options["model"],
            "classes": json.dumps(list(SHAPES)),
            "options": json.dumps(options),
            "step": str(step),
        },
    )
    files = {
        "checkpoint.safetensors": pack_checkpoint(model, optimizer, meta),
        f"{tag}.safetensors": weights,
        f"{tag}.json": json.dumps(log, indent=1).encode(),
    }
    return write_all(folder, files)


def held_out(name: str, seed: int = 0, n: int | None = None):
    """The held-out images of a recipe (another world than training's)."""
    recipe = RECIPES[name]
    return generate_indices(list(range(n or recipe.eval_size)), seed + HELD_OUT, **recipe.data)
