"""Integrated gradients.

Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017
(arXiv:1703.01365), eq. (1) and its quadrature (section 5):

.. math::
    \\mathrm{IG}_c(x) = (x_c - x'_c) \\int_0^1
        \\frac{\\partial S_t}{\\partial x_c}\\big(x' + \\alpha (x - x')\\big)\\, d\\alpha
    \\approx (x_c - x'_c) \\sum_{k=1}^{m} w_k
        \\frac{\\partial S_t}{\\partial x_c}\\big(x' + \\alpha_k (x - x')\\big),
    \\qquad M_{ij} = \\sum_c \\mathrm{IG}_{c,i,j}(x)

with baseline :math:`x'`. The map is signed and keeps completeness:
:math:`\\sum_{c,i,j} \\mathrm{IG}_{c,i,j} \\approx S_t(x) - S_t(x')`. The nodes
:math:`\\alpha_k` and weights :math:`w_k` are captum's (``IntegratedGradients``, same ``n_steps``
and ``method``, here the option ``rule``, as ``method`` names the explanation method in
:func:`convscope.explain`): ``"gausslegendre"`` (Gauss-Legendre nodes on [0, 1], computed here
with the Golub-Welsch eigenvalue method, on the CPU in float64), ``"riemann_left"``, ``"riemann_right"``, ``"riemann_middle"``
(weights :math:`1/m` at ``torch.linspace`` nodes) and ``"riemann_trapezoid"`` (nodes
``linspace(0, 1, m)``, weights :math:`1/m` with the two ends halved; note that captum's trapezoid
weights sum to :math:`1 - 1/m`, not 1, so its completeness error is of order :math:`1/m`).
Cost: ``steps`` forward and backward passes per image, plus two forwards (input and baseline).

The baseline is in model-input space: for a mean/std-normalized model, ``0.0`` is the dataset's
mean colour (not black); pass a tensor (e.g. the normalized black image) for another baseline.
"""

from __future__ import annotations

import torch

from convscope.core.context import Context, MethodOutput
from convscope.core.perturbed_batches import (
    as_baseline,
    clean_forward,
    copy_scores,
    empty_rows,
    progress,
    row_chunks,
)
from convscope.core.registry import register_method
from convscope.errors import MethodError

__all__ = ["RULES", "integrated_gradients", "quadrature"]

RULES = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


def quadrature(rule: str, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(nodes alpha_k in [0, 1], weights w_k), float64 on the CPU, as captum defines them."""
    if rule not in RULES:
        raise MethodError(f"unknown quadrature rule {rule!r}; use one of {', '.join(RULES)}")
    least = 1 if rule == "gausslegendre" else 2
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < least:
        raise MethodError(f"{rule} needs an integer number of steps >= {least}, not {steps!r}")
    m = steps
    if rule == "gausslegendre":
        # Golub-Welsch: the nodes are the eigenvalues of the Jacobi matrix of the Legendre
        # polynomials, the weights 2 v_0^2; rescaled from [-1, 1] to [0, 1].
        k = torch.arange(1, m, dtype=torch.float64)
        off = k / torch.sqrt(4 * k * k - 1)
        nodes, vectors = torch.linalg.eigh(torch.diag(off, 1) + torch.diag(off, -1))
        return 0.5 * (1 + nodes), vectors[0] ** 2  # 0.5 * (2 v_0^2)
    # captum's Riemann nodes: torch.linspace in the default dtype, then widened
    ends = {
        "riemann_left": (0.0, 1 - 1 / m),
        "riemann_right": (1 / m, 1.0),
        "riemann_middle": (1 / (2 * m), 1 - 1 / (2 * m)),
        "riemann_trapezoid": (0.0, 1.0),
    }[rule]
    alphas = torch.linspace(*ends, m).double()
    weights = torch.full((m,), 1 / m, dtype=torch.float64)
    if rule == "riemann_trapezoid":
        weights[0] /= 2
        weights[-1] /= 2
    return alphas, weights


@register_method(
    "integrated_gradients",
    family="gradient",
    needs_layer=False,
    paper="Sundararajan et al. 2017, Axiomatic Attribution for Deep Networks (arXiv:1703.01365)",
    passes="steps forwards + backwards to the input per image, + 2 forwards",
    summary="(x - x') times the path integral of dS/dx from a baseline x', summed over channels",
)
def integrated_gradients(
    ctx: Context,
    *,
    steps: int = 50,
    baseline: float | torch.Tensor = 0.0,
    rule: str = "gausslegendre",
    batch_size: int | None = None,
) -> MethodOutput:
    """:math:`\\sum_c (x_c - x'_c) \\sum_k w_k \\partial S_t/\\partial x_c(x' + \\alpha_k(x - x'))`
    (Sundararajan et al. 2017).

    Options: ``steps`` quadrature points; ``baseline`` :math:`x'`, a number or a tensor that
    broadcasts to the input, in model-input space (0 is the mean colour of a mean/std-normalized
    model); ``rule`` the quadrature rule (captum's ``method``, see the module docstring);
    ``batch_size`` perturbed inputs per forward pass (default: ``steps`` on a GPU, fewer on a
    CPU: see :func:`convscope.core.perturbed_batches.default_rows`).

    ``extras``: ``attributions`` (N, C, H, W), ``delta`` the completeness error
    :math:`\\sum \\mathrm{IG} - (S_t(x) - S_t(x'))` per image.
    """
    alphas, weights = quadrature(rule, steps)
    x = ctx.x.detach()
    n = x.shape[0]
    base = as_baseline(baseline, x)
    alphas = alphas.to(x.device, x.dtype)
    weights = weights.to(x.device, x.dtype)
    output, clean_scores = clean_forward(ctx)
    diff = x - base  # (N, C, H, W)

    total = torch.zeros_like(x)
    chunks = row_chunks(n * steps, n, batch_size, ctx.target, default=steps, like=x)
    buf = empty_rows(x, chunks[0][1] - chunks[0][0])
    for start, stop in progress(chunks, ctx, "integrated gradients"):
        rows = torch.arange(start, stop, device=x.device)
        images, k = rows % n, rows // n
        xb = torch.index_select(diff, 0, images, out=buf[: stop - start])
        xb.mul_(alphas[k].view(-1, 1, 1, 1))  # x' + alpha (x - x'), as captum
        xb.add_(base if base.shape[0] == 1 else base[images])
        with torch.enable_grad():
            xg = xb.detach().requires_grad_(True)
            scores = copy_scores(ctx.target, ctx.model(xg), images, n)
            (grad,) = torch.autograd.grad(scores.sum(), xg)
        total.index_add_(0, images, grad * weights[k].view(-1, 1, 1, 1))
    attributions = total * diff

    with torch.no_grad():
        base_out = ctx.model(empty_rows(x, n).copy_(base.expand_as(x)))
        base_scores = copy_scores(ctx.target, base_out, torch.arange(n, device=x.device), n)
    delta = attributions.flatten(1).sum(dim=1) - (clean_scores - base_scores.detach())
    return MethodOutput(
        attributions.sum(dim=1), output, extras={"attributions": attributions, "delta": delta}
    )
