"""The front door of feature visualization: :func:`visualize`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from convscope.errors import ConvscopeError
from convscope.featurevis.objectives import Objective, parse_objective
from convscope.featurevis.result import Visualization

__all__ = ["visualize"]


def visualize(
    model: Any,
    objective: Any,
    *,
    steps: int | None = None,
    preset: str | None = None,
    size: int | tuple[int, int] | None = None,
    batch: int | None = None,
    seed: int = 0,
    progress: bool = False,
    **options: Any,
) -> Visualization:
    """Images that maximize an objective: a class, a channel, a neuron, a direction, or any sum.

    Args:
        model: a bundle, a registered name, ``"torchvision:<arch>"``, ... (see
            :func:`convscope.load_model`); the model is not changed.
        objective: one objective or a list of them: strings (``"class:flamingo"``,
            ``"prob:130"``, ``"channel:_blocks.10:5"``, ``"neuron:_blocks.10:5"``,
            ``"neuron:_blocks.10:5:3:4"``), ``("direction:LAYER", vector)``, or
            :class:`~convscope.featurevis.objectives.Objective` s combined with ``+ - *``. A list
            runs as one batch, one image (or ``batch`` images) per objective, in one optimization.
        steps: optimization steps (default: the preset's; lucid 256).
        preset: ``"lucid"``, ``"simonyan"``, ``"yosinski"`` or ``"fooling"`` (see
            :mod:`convscope.featurevis.presets`); None: lucid's defaults with every option free.
        size: the image's height and width (default: the bundle's input crop, 224).
        batch: images per objective (default 1; yosinski makes 4, one per setting of its paper).
        seed: the seed of the random starts and transforms; copy ``k`` of every objective uses
            the same draws, so a run of one objective gives the same image as that objective's
            row in a batched run.
        progress: show a progress bar over the steps.
        **options: see ``convscope.featurevis.presets.OPTIONS`` (``param``, ``lr``, ``l2``,
            ``transforms``, ``blur_sigma``...).

    Returns:
        A :class:`~convscope.featurevis.result.Visualization`.

    Every mistake (an unknown class or layer, a channel or position out of range, a step count or
    size below 1, an option that contradicts the preset, a spatial objective on a layer that is
    not 4-D) raises a ConvscopeError before any optimization runs.
    """
    from convscope.featurevis.presets import resolve_options
    from convscope.featurevis.render import dry_run, pixel_space, render
    from convscope.models import load_model

    objectives = _objectives(objective)
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ConvscopeError(f"steps must be an integer >= 1, not {steps!r}")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ConvscopeError(f"batch must be an integer >= 1, not {batch!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConvscopeError(f"seed must be an integer, not {seed!r}")
    recipe, default_steps, chosen = resolve_options(preset, options, batch)
    steps = default_steps if steps is None else steps
    bundle = load_model(model)
    hw = _size(size, bundle)
    pixels = pixel_space(bundle)
    layers = list(dict.fromkeys(s for o in objectives for s in o.layers()))
    from convscope.core.guard import preserved

    with preserved(bundle.model, frozen=True):
        env = dry_run(bundle, layers, hw, pixels)
        for o in objectives:
            o.bind(env)  # every name, range and shape checked before any optimization
    out = render(bundle, objectives, recipe, steps, hw, seed, progress, env=env)
    copies = recipe.copies
    used = recipe.as_dict()
    used.update(
        preset=chosen.name if chosen else None, steps=steps, size=hw, seed=seed, copies=copies
    )
    return Visualization(
        images=out["images"].cpu(),
        inputs=out["inputs"].cpu(),
        trace=out["trace"].cpu(),
        values=out["values"].cpu(),
        output=None if out["output"] is None else out["output"].cpu(),
        objectives=[o.name for o in objectives for _ in range(copies)],
        copy=[k for _ in objectives for k in range(copies)],
        options=used,
        class_names=bundle.class_names,
        model=bundle.name,
    )


def _objectives(objective: Any) -> list[Objective]:
    items = objective if isinstance(objective, list) else [objective]
    if not items:
        raise ConvscopeError("no objective given")
    return [parse_objective(o) for o in items]


def _size(size: Any, bundle: Any) -> tuple[int, int]:
    from convscope.core.bundle import Preprocess

    if size is None:
        pre = bundle.preprocess
        side = pre.crop if isinstance(pre, Preprocess) else 224
        return (side, side)
    pair: Sequence[Any] = (size, size) if not isinstance(size, tuple | list) else size
    if len(pair) != 2 or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in pair
    ):
        raise ConvscopeError(f"size must be an integer >= 1 or (height, width), not {size!r}")
    return (int(pair[0]), int(pair[1]))
