"""The optimization loop: the one place where images are optimized.

:func:`render` composes the pieces and adds none of its own: per step, the parameterization makes
the images (:mod:`.param`), the transforms move them (:mod:`.transforms`), the bundle's
preprocessing turns them into model inputs, one batched forward pass runs with the
:class:`~convscope.core.recorder.Recorder` on the layers the objectives read, the objectives
(:mod:`.objectives`) score each image, one backward pass gives the gradient of every image's own
objective, and the optimizer (Adam, or gradient ascent with a step rule) and the pixel operators of
:mod:`.regularizers` update the parameters.

Batching: objective ``g`` owns images ``g * copies .. (g + 1) * copies - 1``; an image's value
depends only on its own pixels (except :func:`~.objectives.diversity`, across an objective's
copies), so one batched run equals separate runs. Each image draws its start and its transforms
from a generator seeded by ``(seed, copy)``: the same objective and seed give the same image alone
or in any batch. Everything runs in torch on the model's device; nothing is synchronized with the
host inside the loop except the progress bar's occasional value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from convscope.core.bundle import ModelBundle, Preprocess
from convscope.core.guard import preserved
from convscope.core.layers import resolve_layer
from convscope.core.recorder import Recorder
from convscope.errors import ModelError
from convscope.featurevis import regularizers as reg
from convscope.featurevis.objectives import Env, Objective, Probe, l2, total_variation
from convscope.featurevis.optim import Adam, ascent_rate
from convscope.featurevis.param import FourierParam, ImageParam, PixelParam
from convscope.featurevis.presets import Recipe

__all__ = ["Pixels", "dry_run", "generators", "pixel_space", "render"]


@dataclass(frozen=True)
class Pixels:
    """Display pixels in [0, 1] <-> the model's input, from the bundle's :class:`Preprocess`:
    ``input = (pixel * 255 * scale - mean) / std``. ``center`` is the colour whose input is 0."""

    center: torch.Tensor  # (3,)
    spread: torch.Tensor  # (3,): input = (pixel - center) / spread

    def to_input(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.center.view(1, -1, 1, 1)) / self.spread.view(1, -1, 1, 1)

    def from_input(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.spread.view(1, -1, 1, 1) + self.center.view(1, -1, 1, 1)


def pixel_space(bundle: ModelBundle) -> Pixels:
    """The display-pixel mapping of ``bundle`` on its device (ModelError for a custom callable
    preprocessing, which cannot be differentiated through)."""
    pre = bundle.preprocess
    if not isinstance(pre, Preprocess):
        raise ModelError(
            "feature visualization needs a bundle whose preprocess is a convscope Preprocess "
            "(mean, std, scale): a custom PIL preprocessing cannot be differentiated through"
        )
    dev = bundle.device
    k = 255.0 * pre.scale
    mean = torch.tensor(pre.mean, dtype=torch.float32, device=dev)
    std = torch.tensor(pre.std, dtype=torch.float32, device=dev)
    return Pixels(center=mean / k, spread=std / k)


def generators(seed: int, copies: int, n_objectives: int) -> list[torch.Generator]:
    """One CPU generator per image: image ``g * copies + k`` gets the seed of copy ``k``."""
    out = []
    for _ in range(n_objectives):
        for k in range(copies):
            out.append(torch.Generator().manual_seed(_mix(seed, k)))
    return out


def _mix(seed: int, k: int) -> int:
    """A 63-bit seed for copy ``k`` of a run with ``seed`` (distinct for distinct pairs)."""
    return (int(seed) * 1_000_003 + 7919 * k + 12345) % (2**63 - 1)


def dry_run(
    bundle: ModelBundle, layers: Sequence[str], size: tuple[int, int], pixels: Pixels
) -> Env:
    """One forward pass on the mean image (no gradient) for the shape of each layer the objectives
    read and of the model output; layer names are resolved (closest-match errors) here."""
    model = bundle.model
    refs = {name: resolve_layer(model, name) for name in layers}
    x = torch.zeros(1, 3, *size, device=bundle.device)
    with torch.no_grad():
        if refs:
            with Recorder(model, list(refs.values())) as rec:
                out = model(x)
                shapes = {ref.spec: tuple(rec.activation(ref).shape) for ref in refs.values()}
        else:
            out, shapes = model(x), {}
    out_shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
    return Env(model, bundle.class_names, shapes, out_shape)


def _make_param(
    recipe: Recipe, gens: list[torch.Generator], size: tuple[int, int], pixels: Pixels
) -> ImageParam:
    device = pixels.center.device
    shape = (3, *size)
    if recipe.param == "pixels":
        deltas = PixelParam.init(shape, gens, recipe.init, recipe.init_std)
        return PixelParam(deltas.to(device), pixels.center)
    spectra = FourierParam.init(shape, gens, recipe.init_std)
    return FourierParam(spectra.to(device), size, recipe.decorrelate)


def _per_image(values: Sequence[Any], n_objectives: int, device: torch.device) -> torch.Tensor:
    return torch.tensor(list(values) * n_objectives, dtype=torch.float32, device=device)


def render(
    bundle: ModelBundle,
    objectives: Sequence[Objective],
    recipe: Recipe,
    steps: int,
    size: tuple[int, int],
    seed: int = 0,
    progress: bool = False,
    env: Env | None = None,
) -> dict[str, Any]:
    """Optimize ``recipe.copies`` images per objective for ``steps`` steps. Returns the final
    images (display pixels), the model inputs, the trace (steps, N) of each image's objective, the
    final values and model output (on the untransformed images), and the per-image objective
    names. The objectives must bind to ``env`` (made by :func:`dry_run` when not given)."""
    model = bundle.model
    pixels = pixel_space(bundle)
    device = pixels.center.device
    layer_names = list(dict.fromkeys(s for o in objectives for s in o.layers()))
    copies, n_obj = recipe.copies, len(objectives)
    n = copies * n_obj
    with preserved(model, frozen=True):
        env = env or dry_run(bundle, layer_names, size, pixels)
        bound = [o.bind(env) for o in objectives]
        penalty = None
        if recipe.l2 or recipe.tv:
            terms = []
            if recipe.l2:
                terms.append(recipe.l2 * l2())
            if recipe.tv:
                terms.append(recipe.tv * total_variation())
            penalty = sum(terms[1:], terms[0]).bind(env)
        refs = {name: resolve_layer(model, name) for name in layer_names}

        gens = generators(seed, copies, n_obj)
        param = _make_param(recipe, gens, size, pixels)
        tf = recipe.transforms
        table = None
        if not tf.identity:
            table = torch.stack([tf.draw(steps, g) for g in gens], dim=1).to(device)  # (S, N, 6)

        ascent = recipe.optimizer == "ascent"
        if ascent:
            lr = _per_image(recipe.lr, n_obj, device)
            rule = _per_image(
                [("plain", "normalized", "progress").index(s) for s in recipe.step], n_obj, device
            )
            prog = _per_image(recipe.gain, n_obj, device)
            decay = _per_image(recipe.decay, n_obj, device)
            clip_norm = _per_image(recipe.clip_norm, n_obj, device)
            clip_contrib = _per_image(recipe.clip_contribution, n_obj, device)
            any_decay = any(recipe.decay)
            any_norm = any(recipe.clip_norm)
            any_contrib = any(recipe.clip_contribution)
            blurs = sorted(
                {(s, e) for s, e in zip(recipe.blur_sigma, recipe.blur_every) if e > 0 and s > 0}
            )
            blur_rows = {
                key: torch.tensor(
                    [
                        g * copies + k
                        for g in range(n_obj)
                        for k in range(copies)
                        if (recipe.blur_sigma[k], recipe.blur_every[k]) == key
                    ],
                    device=device,
                )
                for key in blurs
            }
        else:
            adam = Adam(param.params, lr=recipe.lr[0])

        trace = torch.empty(steps, n, device=device)
        bar = None
        iterator: Any = range(steps)
        report = progress if callable(progress) else None  # a callback (step, steps)
        if progress is True:
            from tqdm.auto import tqdm

            bar = tqdm(iterator, desc="visualize", unit="step", total=steps)
            iterator = bar
        rec = Recorder(model, list(refs.values())) if refs else None
        if rec is not None:
            rec.__enter__()
        try:
            for step in iterator:
                image = param.image()
                view = image if table is None else tf.apply(image, table[step])
                if rec is not None:
                    rec.clear()
                out = model(pixels.to_input(view))
                acts = {name: rec.activation(ref) for name, ref in refs.items()} if rec else {}
                values = _evaluate(bound, image, pixels.center, out, acts, copies)
                total = values
                if penalty is not None:
                    total = total + _evaluate(
                        [penalty] * n_obj, image, pixels.center, out, acts, copies
                    )
                grads = torch.autograd.grad(total.sum(), param.params)
                trace[step] = values.detach()
                if ascent:
                    _ascent_step(
                        param,
                        grads[0],
                        step,
                        lr,
                        rule,
                        prog,
                        decay,
                        clip_norm,
                        clip_contrib,
                        blurs,
                        blur_rows,
                        any_decay,
                        any_norm,
                        any_contrib,
                    )
                else:
                    adam.ascend(grads)
                    param.project_()
                if report is not None:
                    report(step + 1, steps)
                if bar is not None and (step % 16 == 0 or step == steps - 1):
                    bar.set_postfix_str(f"objective {float(values.detach().mean()):.3g}")
        finally:
            if rec is not None:
                rec.__exit__(None, None, None)
            if bar is not None:
                bar.close()
        # the final images, as they are (no transforms)
        with torch.no_grad():
            image = param.image().detach()
            x = pixels.to_input(image)
            if refs:
                with Recorder(model, list(refs.values())) as final:
                    out = model(x)
                    acts = {name: final.activation(ref) for name, ref in refs.items()}
            else:
                out, acts = model(x), {}
            values = _evaluate(bound, image, pixels.center, out, acts, copies)
    return {
        "images": image.clamp(0, 1),
        "inputs": x,
        "trace": trace.detach(),
        "values": values.detach(),
        "output": out.detach() if isinstance(out, torch.Tensor) else None,
    }


def _evaluate(
    bound: Sequence[Any],
    image: torch.Tensor,
    center: torch.Tensor,
    out: Any,
    acts: dict[str, torch.Tensor],
    copies: int,
) -> torch.Tensor:
    """(N,) values: objective ``g`` on its own ``copies`` rows."""
    parts = []
    for g, fn in enumerate(bound):
        rows = slice(g * copies, (g + 1) * copies)
        probe = Probe(
            image=image[rows],
            center=center,
            output=out[rows] if isinstance(out, torch.Tensor) else None,
            activations={k: v[rows] for k, v in acts.items()},
        )
        parts.append(fn(probe).reshape(-1))
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def _ascent_step(
    param: ImageParam,
    g: torch.Tensor,
    step: int,
    lr: torch.Tensor,
    rule: torch.Tensor,
    prog: torch.Tensor,
    decay: torch.Tensor,
    clip_norm: torch.Tensor,
    clip_contrib: torch.Tensor,
    blurs: list[tuple[float, int]],
    blur_rows: dict[tuple[float, int], torch.Tensor],
    any_decay: bool,
    any_norm: bool,
    any_contrib: bool,
) -> None:
    """One gradient-ascent step on the (single) parameter tensor, then Yosinski's operators in his
    order (decay, blur, small-norm clipping, small-contribution clipping), then the projection to
    the valid range."""
    (x,) = param.params
    with torch.no_grad():
        size = ascent_rate(g, lr, rule, prog)
        new = x + size.view(-1, *([1] * (x.ndim - 1))) * g
        if any_decay:
            new = reg.decay(new, decay)
        for key in blurs:
            if reg.blur_due(step, key[1]):
                rows = blur_rows[key]
                new[rows] = reg.gaussian_blur(new[rows], key[0])
        if any_norm:
            new = reg.clip_small_norm(new, clip_norm)
        if any_contrib:
            new = reg.clip_small_contribution(new, g, clip_contrib)
        x.copy_(new)
    param.project_()
