"""Scoring methods with the faithfulness metrics: :func:`evaluate` runs them with
:func:`convscope.runner.compare` (timed there) and :func:`evaluate_comparison` scores a comparison's
maps, one row per method."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from convscope.core.bundle import ModelBundle
from convscope.core.guard import preserved
from convscope.core.outputs import selecting
from convscope.core.perturbed_batches import check_batch_size
from convscope.core.targets import TargetSpec
from convscope.data.inputs import prepare_inputs
from convscope.errors import ConvscopeError
from convscope.metrics.baselines import Baseline, baseline_input, black_input
from convscope.metrics.common import (
    bundle_of,
    check_steps,
    checked_maps,
    class_targets,
    probabilities,
)
from convscope.metrics.faithfulness import (
    batched_curves,
    curve_auc,
    masked_confidence,
    pixel_ranks,
)
from convscope.result import Comparison

__all__ = ["METRIC_COLUMNS", "evaluate", "evaluate_comparison"]

METRIC_COLUMNS = ("deletion_auc", "insertion_auc", "average_drop", "increase_in_confidence")


def evaluate(
    bundle_or_model: Any,
    images: Any,
    methods: str | Sequence[str] = ("gradcam", "saliency"),
    target: TargetSpec = "top1",
    layer: str | Sequence[str] | None = "auto",
    *,
    steps: int = 28,
    batch_size: int | None = 32,
    deletion_baseline: Baseline = "constant",
    insertion_baseline: Baseline = "blur",
    sigma: float = 5.0,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Score methods with the faithfulness metrics: one row per method.

    ``options`` gives method options by method name (``{"occlusion": {"window": 32}}``).

    The methods run once each in one :func:`convscope.compare` (timed there; a method that cannot
    apply raises its error here), then on their maps: deletion and insertion AUC (Petsiuk et al.
    2018, RISE: trapezoid area under the target's softmax probability as the most relevant
    pixels are removed / inserted in ``steps`` chunks) and Average Drop / Increase in Confidence
    (Chattopadhay et al. 2018, Grad-CAM++: :math:`100\\,\\mathrm{mean}(\\max(0, Y-O)/Y)` and
    :math:`100\\,\\mathrm{mean}(1[O>Y])`) by :func:`evaluate_comparison`.

    Returns:
        Rows ``{"method", "layer", "n_images", "deletion_auc", "insertion_auc", "average_drop",
        "increase_in_confidence", "seconds"}``: metrics averaged over images; ``seconds`` is the
        wall time of the method's run. Deletion AUC and Average Drop: lower is better; insertion
        AUC and Increase in Confidence: higher is better.
    """
    from convscope.runner import compare

    check_steps(steps)
    check_batch_size(batch_size)
    names = [methods] if isinstance(methods, str) else list(methods)
    if not names:
        raise ConvscopeError("no methods given")
    bundle, known = bundle_of(bundle_or_model)
    x = prepare_inputs(bundle, images, pixels=False)[0]
    bases = _baselines(bundle, x, known, deletion_baseline, insertion_baseline, sigma)
    comparison = compare(
        bundle, x, names, target, layer, batch_size=batch_size, options=options, skip=False
    )
    return _score(bundle, x, comparison, bases, steps, batch_size)


def evaluate_comparison(
    bundle: ModelBundle,
    x: torch.Tensor,
    comparison: Comparison,
    *,
    steps: int = 28,
    batch_size: int | None = 32,
    deletion_baseline: Baseline = "constant",
    insertion_baseline: Baseline = "blur",
    sigma: float = 5.0,
    known_preprocess: bool = True,
) -> list[dict[str, Any]]:
    """The rows of :func:`evaluate` for the explanations of ``comparison`` (made by
    :func:`convscope.compare` on ``bundle`` and the model input ``x``), in its order; each row's
    ``seconds`` is the comparison's time for the method. The deletion and insertion curves of all
    images share batched forwards. ``known_preprocess=False`` (a bare ``nn.Module``, whose
    preprocessing is a guess) makes the black input 0."""
    check_steps(steps)
    check_batch_size(batch_size)
    bases = _baselines(bundle, x, known_preprocess, deletion_baseline, insertion_baseline, sigma)
    return _score(bundle, x, comparison, bases, steps, batch_size)


def _baselines(
    bundle: ModelBundle,
    x: torch.Tensor,
    known: bool,
    deletion_baseline: Baseline,
    insertion_baseline: Baseline,
    sigma: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(the black input, the deletion baseline, the insertion baseline)."""
    black = black_input(bundle, x, known)
    return (
        black,
        baseline_input(deletion_baseline, x, black, sigma),
        baseline_input(insertion_baseline, x, black, sigma),
    )


def _score(
    bundle: ModelBundle,
    x: torch.Tensor,
    comparison: Comparison,
    bases: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    steps: int,
    batch_size: int | None,
) -> list[dict[str, Any]]:
    black, dbase, ibase = bases
    rows = []
    for name, result in comparison.explanations.items():
        m = checked_maps(result, x)
        with preserved(bundle.model), selecting(bundle.model, bundle.output) as net:
            probs = probabilities(net, x, batch_size)
            targets = class_targets(bundle, None, result, probs)
            curves = batched_curves(
                net,
                x,
                pixel_ranks(m),
                targets,
                [(dbase, False), (ibase, True)],
                steps,
                batch_size,
            )
            original = probs.gather(1, targets[:, None])[:, 0]
            conf = masked_confidence(net, x, m, targets, black, original, batch_size)
        auc = curve_auc(curves, steps)
        rows.append(
            {
                "method": result.method,
                "layer": result.layer,
                "n_images": int(x.shape[0]),
                "deletion_auc": float(auc[0].mean()),
                "insertion_auc": float(auc[1].mean()),
                "average_drop": conf.average_drop,
                "increase_in_confidence": conf.increase_in_confidence,
                "seconds": comparison.seconds[name],
            }
        )
    return rows
