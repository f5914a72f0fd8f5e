"""What the lecture-004 models learned: class templates against class mean images.

Softmax regression scores class ``c`` by ``W[c] . x + b_c``, so ``W[c]`` (its weight template,
:func:`convscope.weight_templates`) should look like the images of class ``c``. Adding the same
vector to every row changes no prediction, so only the rows' differences are determined by the
data (L2 keeps the common part small): each template is compared with its class's mean image
both as is and with the mean over all classes removed (what sets the class apart), by Pearson's
correlation over the 784 pixels.

For the MLP, whose classes have no single template, the same is reported for the product
``W_out @ W_hidden`` (what the network computes if every hidden unit were active: a linear
summary, not the network).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["class_means", "template_correlations"]


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a = a.flatten().double() - a.double().mean()
    b = b.flatten().double() - b.double().mean()
    return float((a @ b) / (a.norm() * b.norm()).clamp_min(1e-300))


def class_means(images: torch.Tensor, labels: torch.Tensor, classes: int) -> torch.Tensor:
    """(classes, C, H, W) the mean image of each class (zeros for a class with no image)."""
    out = torch.zeros(classes, *images.shape[1:], dtype=torch.float64)
    out.index_add_(0, labels, images.double())
    counts = torch.bincount(labels, minlength=classes).clamp_min(1).double()
    return (out / counts.view(-1, *[1] * (images.ndim - 1))).float()


def template_correlations(model: Any, n: int = 2000, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per class: ``raw`` (template vs the class mean image) and ``centred`` (vs the class mean
    minus the mean of all class means), on ``n`` held-out 28 x 28 images of the training seed
    ``seed``. ``model``: ``"softmax-regression"`` (its templates) or ``"mlp"`` (``W_out @ W_hidden``)
    or a bundle of either."""
    from convscope.data.shapes import GRAY28, SHAPES, generate
    from convscope.inside.templates import weight_templates
    from convscope.models import load_model
    from convscope.train.trainer import HELD_OUT

    bundle = load_model(model)
    batch = generate(n, seed + HELD_OUT, **GRAY28)
    means = class_means(batch.images, batch.labels["shape"], len(SHAPES))
    if hasattr(bundle.model, "hidden"):
        view = weight_templates(bundle, "hidden", (1, 28, 28), hidden_to_output=True)
        assert view.output_weights is not None
        units = view.templates.shape[0]
        templates = (view.output_weights @ view.templates.reshape(units, -1)).reshape(-1, 1, 28, 28)
    else:
        templates = weight_templates(bundle, "fc", (1, 28, 28)).templates
    centred = means - means.mean(dim=0, keepdim=True)
    return {
        name: {
            "raw": _pearson(templates[c], means[c]),
            "centred": _pearson(templates[c], centred[c]),
        }
        for c, name in enumerate(SHAPES)
    }
