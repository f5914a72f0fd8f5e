"""Sanity checks: does the map depend on what the model learned?

**Cascading model-parameter randomization** (Adebayo et al., "Sanity Checks for Saliency Maps",
NeurIPS 2018, arXiv:1810.03292, section 3.1): the layers with parameters are re-initialized one
after another from the top (the output) down, cumulatively, and the method's maps are recomputed
after each stage for the same target classes. A method that passes the check gives maps that
drift away from the original ones; the similarity is measured per image by the Spearman rank
correlation of the maps and of their absolute values, and by SSIM (as in the paper).

- Spearman: :math:`\\rho = \\mathrm{corr}(\\mathrm{rank}(a), \\mathrm{rank}(b))`, the Pearson
  correlation of the ranks, ties given their average rank (as :func:`scipy.stats.spearmanr`).
- SSIM (Wang et al., "Image Quality Assessment: From Error Visibility to Structural Similarity",
  IEEE TIP 2004): the mean over 7 x 7 windows of
  :math:`\\frac{(2\\mu_a\\mu_b + C_1)(2\\sigma_{ab} + C_2)}
  {(\\mu_a^2 + \\mu_b^2 + C_1)(\\sigma_a^2 + \\sigma_b^2 + C_2)}`, :math:`C_1 = (0.01 R)^2`,
  :math:`C_2 = (0.03 R)^2`, sample (co)variances, as :func:`skimage.metrics.structural_similarity`
  computes it by default; maps are min-max scaled to [0, 1] first (:math:`R = 1`).

The randomization works on a :func:`copy.deepcopy` of the model; the user's model is untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from convscope.core.bundle import ModelBundle
from convscope.core.layer_listing import parametric_layers
from convscope.core.targets import TargetSpec
from convscope.errors import ConvscopeError

__all__ = [
    "RandomizationResult",
    "checkpoint_layers",
    "model_randomization",
    "rankdata",
    "spearman",
    "ssim",
]


@dataclass
class RandomizationResult:
    """The cascading randomization of one method.

    Attributes:
        method: the method checked.
        stages: ``"original"`` then the layer names in the order they were randomized (top down);
            stage ``s`` has every parametric layer from the top down to ``stages[s]`` randomized.
        correlations: (S, N) Spearman correlation of each image's map at each stage with its
            original map (stage 0 recomputes the maps on the unrandomized copy: 1).
        correlations_abs: (S, N) the same on the absolute values of the maps.
        ssim: (S, N) SSIM of the min-max scaled maps, or None when not asked for (or the maps are
            smaller than 7 x 7).
        maps: (S, N, H, W) the maps at each stage, on the CPU (stage 0: recomputed on the
            unrandomized copy, equal to the original maps).
        targets: the class explained for each image (the original explanation's).
    """

    method: str
    stages: list[str]
    correlations: torch.Tensor
    correlations_abs: torch.Tensor
    ssim: torch.Tensor | None
    maps: torch.Tensor
    targets: list[int] | None

    def rows(self) -> list[dict[str, Any]]:
        """One row per stage with the correlations averaged over images (NaN ignored)."""
        out = []
        for s, name in enumerate(self.stages):
            row: dict[str, Any] = {
                "stage": s,
                "layer": name,
                "spearman": float(self.correlations[s].nanmean()),
                "spearman_abs": float(self.correlations_abs[s].nanmean()),
            }
            if self.ssim is not None:
                row["ssim"] = float(self.ssim[s].nanmean())
            out.append(row)
        return out


def _flat_pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.shape != b.shape:
        raise ConvscopeError(
            f"cannot correlate tensors of shapes {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.ndim == 0 or a.numel() == 0:
        raise ConvscopeError("cannot correlate empty tensors")
    one = a.ndim == 1
    return (
        a.reshape(1 if one else a.shape[0], -1),
        b.to(a.device).reshape(1 if one else b.shape[0], -1),
        one,
    )


def rankdata(x: torch.Tensor) -> torch.Tensor:
    """Ranks along the last dimension of an (N, M) tensor, 1..M, ties given the average of the
    ranks they span (``scipy.stats.rankdata(method="average")``), as float64."""
    n, m = x.shape
    s, order = torch.sort(x, dim=1, stable=True)
    new = torch.ones_like(s, dtype=torch.bool)
    new[:, 1:] = s[:, 1:] != s[:, :-1]
    group = new.long().cumsum(dim=1) - 1  # tie group of each sorted position
    counts = torch.zeros(n, m, dtype=torch.float64, device=x.device)
    counts.scatter_add_(1, group, torch.ones_like(counts))
    starts = counts.cumsum(dim=1) - counts  # 0-based first position of each group
    average = starts + (counts + 1) / 2  # mean of the 1-based ranks starts+1 .. starts+counts
    ranks = torch.empty(n, m, dtype=torch.float64, device=x.device)
    return ranks.scatter_(1, order, average.gather(1, group))


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation :math:`\\rho = \\mathrm{cov}(r_a, r_b) / (\\sigma_{r_a}
    \\sigma_{r_b})` of the average ranks (ties averaged; Spearman 1904), per item.

    ``a`` and ``b`` are (N, ...) batches: each item is flattened and the result is (N,) float64;
    two 1-D tensors give a 0-D result. A constant item has no ranking: its correlation is NaN (as
    in :func:`scipy.stats.spearmanr`).
    """
    fa, fb, one = _flat_pair(a, b)
    ra, rb = rankdata(fa), rankdata(fb)
    ra = ra - ra.mean(dim=1, keepdim=True)
    rb = rb - rb.mean(dim=1, keepdim=True)
    rho = (ra * rb).sum(dim=1) / ((ra * ra).sum(dim=1) * (rb * rb).sum(dim=1)).sqrt()
    rho = rho.clamp(-1, 1)  # NaN (0/0) stays NaN
    return rho[0] if one else rho


def ssim(
    a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, win_size: int = 7
) -> torch.Tensor:
    """Mean structural similarity (Wang et al. 2004) of (N, H, W) image pairs, per image:
    :math:`\\frac{(2\\mu_a\\mu_b + C_1)(2\\sigma_{ab} + C_2)}{(\\mu_a^2+\\mu_b^2+C_1)
    (\\sigma_a^2+\\sigma_b^2+C_2)}` over ``win_size`` x ``win_size`` uniform windows (valid
    positions only), :math:`C_1 = (0.01 R)^2`, :math:`C_2 = (0.03 R)^2`, :math:`R` the
    ``data_range``, sample (co)variances: :func:`skimage.metrics.structural_similarity`'s default.
    Returns (N,) float64."""
    if a.shape != b.shape or a.ndim != 3:
        raise ConvscopeError(
            f"ssim needs two (N, H, W) batches of one shape; got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if min(a.shape[1:]) < win_size:
        raise ConvscopeError(f"ssim needs images of at least {win_size} x {win_size} pixels")
    x = a.detach().double()[:, None]
    y = b.detach().to(x.device).double()[:, None]

    def mean(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, win_size, stride=1)

    ux, uy = mean(x), mean(y)
    norm = win_size**2 / (win_size**2 - 1)
    vx = norm * (mean(x * x) - ux * ux)
    vy = norm * (mean(y * y) - uy * uy)
    vxy = norm * (mean(x * y) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.flatten(1).mean(dim=1)


def _minmax(m: torch.Tensor) -> torch.Tensor:
    flat = m.flatten(1)
    lo = flat.amin(dim=1).view(-1, 1, 1)
    hi = flat.amax(dim=1).view(-1, 1, 1)
    return torch.where(hi > lo, (m - lo) / (hi - lo).clamp_min(torch.finfo(m.dtype).tiny), 0.0)


def checkpoint_layers(model: nn.Module, order: Sequence[str], k: int) -> list[str]:
    """``k`` checkpoints of the cascade for :func:`model_randomization`'s ``stages``: among the
    parametric layers ``order`` (top down, :func:`~convscope.core.layer_listing.parametric_layers`)
    the convolutional and linear ones (a weight of 2 or more dimensions), ``k`` of them evenly
    spread from the top one down to the first one (all of them when there are at most ``k``).

    Not to be confused with ``stages=k``, which randomizes and shows the top ``k`` layers only."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConvscopeError(f"the number of checkpoints must be at least 1, not {k!r}")
    modules = dict(model.named_modules())
    weighted = [n for n in order if getattr(getattr(modules[n], "weight", None), "ndim", 0) >= 2]
    if k >= len(weighted):
        return weighted
    if k == 1:
        return weighted[:1]
    return [weighted[round(j * (len(weighted) - 1) / (k - 1))] for j in range(k)]


def _reinit(module: nn.Module, seed: int, devices: list[int]) -> None:
    """Re-initialize ``module``'s own parameters: ``reset_parameters()`` where it exists (under a
    fixed seed), else :math:`N(0, s^2)` with :math:`s` the parameter's standard deviation (0.01
    when that is 0 or undefined), drawn from a seeded generator."""
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
            return
        g = torch.Generator().manual_seed(seed)
        for p in module.parameters(recurse=False):
            std = float(p.float().std()) if p.numel() > 1 else 0.0
            if not std > 0 or not torch.isfinite(torch.tensor(std)):
                std = 0.01
            p.copy_((torch.randn(p.shape, generator=g) * std).to(p.device, p.dtype))


def _select(order: list[str], stages: str | int | Sequence[str], model: nn.Module) -> list[str]:
    if isinstance(stages, str):
        if stages != "all":
            stages = [stages]
        else:
            return list(order)
    if isinstance(stages, int) and not isinstance(stages, bool):
        if stages < 1:
            raise ConvscopeError(f"stages must be at least 1, not {stages}")
        return order[:stages]
    from convscope.core.layers import resolve_layer

    names = []
    for item in stages:
        ref = resolve_layer(model, item)
        if ref.name not in order:
            raise ConvscopeError(
                f"layer {ref.name!r} has no parameters of its own (or does not run); "
                f"parametric layers: {', '.join(order[:8])}{' ...' if len(order) > 8 else ''}"
            )
        names.append(ref.name)
    if not names:
        raise ConvscopeError("no stages given")
    return sorted(set(names), key=order.index)


def model_randomization(
    model: Any,
    images: Any,
    method: str = "gradcam",
    target: TargetSpec = "top1",
    layer: str | Sequence[str] | None = "auto",
    *,
    stages: str | int | Sequence[str] = "all",
    seed: int = 0,
    with_ssim: bool = True,
    batch_size: int | None = None,
    progress: bool = False,
    **options: Any,
) -> RandomizationResult:
    """Cascading model-parameter randomization (Adebayo et al. 2018, Sanity Checks for Saliency
    Maps, arXiv:1810.03292): on a deep copy of the model, the parametric layers are re-initialized
    cumulatively from the top down; after each stage the method's maps are recomputed with
    :func:`convscope.explain` for the original explanation's target classes, and compared with the
    original maps per image by Spearman's :math:`\\rho` of the ranks (of the maps and of
    :math:`|L|`) and by SSIM of the min-max scaled maps.

    Args:
        model: a bundle, a model name or an ``nn.Module`` (never changed).
        images: anything :func:`convscope.explain` takes.
        method, target, layer, **options: as for :func:`convscope.explain`.
        stages: ``"all"`` parametric layers (:func:`parametric_layers`), an int ``k`` (the top k
            only, cheaper), or layer names as checkpoints of the cascade: at the stage of layer
            ``L`` every parametric layer from the top down to ``L`` is randomized, so the maps are
            those of the full cascade at ``L``, computed at a few depths only
            (:func:`checkpoint_layers` spreads ``k`` of them over the depth).
        seed: the layer ``i``-th from the top is re-initialized under seed ``seed + i``, so a
            stage does not depend on which other stages were asked for.
        with_ssim: also compute SSIM (needs maps of at least 7 x 7).
        batch_size: images per forward pass in :func:`convscope.explain`.
        progress: show a progress bar over stages.
    """
    from convscope.data.inputs import prepare_inputs
    from convscope.models import load_model
    from convscope.runner import explain

    bundle = load_model(model)
    x = prepare_inputs(bundle, images, pixels=False)[0]
    original = explain(bundle, x, method, target, layer, batch_size=batch_size, **options)
    same_target = original.targets if original.targets is not None else target
    # the copy explains at the layer(s) the original used, named (a module of the user's model
    # would not be part of the copy)
    same_layer = original.layer.split(", ") if original.layer else layer

    clone = copy.deepcopy(bundle.model)
    rand = ModelBundle(
        model=clone,
        name=f"{bundle.name} (randomized)",
        preprocess=bundle.preprocess,
        class_names=bundle.class_names,
        default_layer=bundle.default_layer,
        meta=dict(bundle.meta),
    )
    order = parametric_layers(clone, x[:1])
    if not order:
        raise ConvscopeError("the model has no layers with parameters to randomize")
    chosen = _select(order, stages, clone)
    modules = dict(clone.named_modules())
    dev = bundle.device
    devices = (
        [dev.index if dev.index is not None else torch.cuda.current_device()]
        if dev.type == "cuda"
        else []
    )

    ref = original.maps.detach()
    ssim_ok = with_ssim and min(ref.shape[1:]) >= 7
    ref_scaled = _minmax(ref.float()) if ssim_ok else None
    maps, rho, rho_abs, sims = [], [], [], []
    steps: list[str | None] = [None, *chosen]
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=f"randomize {original.method}", unit="stage")
    done = 0  # layers order[:done] are randomized
    for name in steps:
        if name is not None:  # every layer from the top down to this checkpoint
            for i in range(done, order.index(name) + 1):
                _reinit(modules[order[i]], seed + i, devices)
            done = order.index(name) + 1
        out = explain(rand, x, method, same_target, same_layer, batch_size=batch_size, **options)
        r = out.maps.detach()
        maps.append(r.float().cpu())
        rho.append(spearman(ref, r))
        rho_abs.append(spearman(ref.abs(), r.abs()))
        if ssim_ok:
            sims.append(ssim(ref_scaled, _minmax(r.float())))
    return RandomizationResult(
        method=original.method,
        stages=["original", *chosen],
        correlations=torch.stack(rho).cpu(),
        correlations_abs=torch.stack(rho_abs).cpu(),
        ssim=torch.stack(sims).cpu() if ssim_ok else None,
        maps=torch.stack(maps),
        targets=original.targets,
    )
