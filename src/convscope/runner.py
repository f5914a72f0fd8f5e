"""Running methods: :func:`explain` (one method) and :func:`compare` (several on the same inputs).

The library's own runner, used by the metrics, the report and the CLI; :mod:`convscope.api` is the
public front door that re-exports it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from convscope.core.bundle import ModelBundle
from convscope.core.context import Context
from convscope.core.guard import preserved
from convscope.core.layer_listing import auto_layer
from convscope.core.layers import LayerRef, resolve_layer
from convscope.core.maps import fuse_layer_maps, upsample_maps
from convscope.core.outputs import selecting
from convscope.core.perturbed_batches import check_batch_size
from convscope.core.recorder import check_hookable
from convscope.core.registry import get_method
from convscope.core.targets import TargetSpec, resolve_targets
from convscope.core.unit_target import (
    UnitScore,
    as_unit_target,
    check_unit_method,
    layer_runs_before,
)
from convscope.data.inputs import prepare_inputs
from convscope.errors import LayerError, MethodError, ModelError, TargetError
from convscope.result import Comparison, Explanation

__all__ = ["compare", "explain", "split_batch_size"]


def _layers(bundle: ModelBundle, layer: Any, x: torch.Tensor) -> list[LayerRef]:
    model = bundle.model
    items = layer if isinstance(layer, list | tuple) else [layer]
    refs = []
    for item in items:
        if item is None or item == "auto":
            if bundle.default_layer is not None:
                refs.append(resolve_layer(model, bundle.default_layer))
            else:
                refs.append(_auto_layer(bundle, x))
        else:
            refs.append(resolve_layer(model, item))
    return refs


def _auto_layer(bundle: ModelBundle, x: torch.Tensor) -> LayerRef:
    """:func:`auto_layer` (a traced forward pass), once per input shape, dtype and device of a
    bundle; found again when the module at the remembered name was replaced."""
    key = (tuple(x.shape[1:]), x.dtype, x.device)
    known = bundle._auto_layers.get(key)
    if known is not None:
        spec, module = known
        try:
            ref = resolve_layer(bundle.model, spec)
        except LayerError:
            ref = None
        if ref is not None and ref.module is module:
            return ref
    ref = auto_layer(bundle.model, x)
    bundle._auto_layers[key] = (ref.spec, ref.module)
    return ref


def _to_input_size(
    maps: torch.Tensor | list[torch.Tensor], size: torch.Size
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor] | None]:
    """(raw maps, maps at input size, per-layer raw maps or None). Several layers' maps are fused
    at input size; their raw maps are the fused map too, and each layer's own raw map is kept
    (``Explanation.meta["layer_maps"]``)."""
    if isinstance(maps, torch.Tensor):
        return maps.detach(), upsample_maps(maps.detach(), size), None
    if len(maps) == 1:
        return maps[0].detach(), upsample_maps(maps[0].detach(), size), None
    fused = fuse_layer_maps([upsample_maps(m.detach(), size) for m in maps])
    return fused, fused, [m.detach() for m in maps]


def split_batch_size(
    batch_size: int | None, options: Mapping[str, Any] | None
) -> tuple[int | None, dict[str, Any]]:
    """``(batch_size, options without it)`` for one method: a ``batch_size`` among a method's own
    options (``-O scorecam:batch_size=16``, ``options={"scorecam": {"batch_size": 16}}``) wins over
    the call's ``batch_size``, which then applies to the other methods."""
    own = dict(options or {})
    return own.pop("batch_size", batch_size), own


def outside_inference_mode(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn`` with ``torch.inference_mode`` off (it forbids the gradients most methods need;
    the caller's mode is back on when ``fn`` returns). Inference tensors among the inputs are
    copied by :func:`prepare_inputs`; a model whose parameters were made in inference mode is a
    clear error, not autograd's."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        if not torch.is_inference_mode_enabled():
            return fn(*args, **kwargs)
        with torch.inference_mode(False):
            try:
                return fn(*args, **kwargs)
            except RuntimeError as e:
                if "inference tensor" not in str(e).lower():
                    raise
                raise ModelError(
                    "the model's parameters or buffers were made inside torch.inference_mode(), "
                    "so no gradient can flow through them; load or copy the model outside it"
                ) from None

    return run


@outside_inference_mode
def explain(
    model: Any,
    images: Any,
    method: str = "gradcam",
    target: TargetSpec = "top1",
    layer: str | Sequence[str] | None = "auto",
    *,
    score: str = "logit",
    batch_size: int | None = None,
    progress: bool = False,
    output: Any = None,
    **options: Any,
) -> Explanation:
    """Explain a model's decision on images with one method.

    Args:
        model: a bundle, a registered name (``"efficientnet_lite0"``), ``"torchvision:<arch>"``,
            ``"timm:<arch>"``, a TorchScript path or any ``nn.Module`` (see
            :func:`convscope.load_model`).
        images: one or many paths, ``"sample:NAME"``, PIL images, arrays, or a preprocessed tensor.
        method: a registered method name (:func:`convscope.methods`).
        target: ``"top1"`` (default), ``"topK"``, a class index or name, one per image in a list, or
            a callable ``output -> (N,) scores`` (see :mod:`convscope.core.targets`).
        layer: for layer methods: a dotted name (``"_blocks.15"``, ``"_swish@1"`` for the 2nd call of
            a reused module) or ``"auto"`` (the bundle's default, else the last 4-D feature map).
        score: ``"logit"`` (default, pre-softmax), ``"prob"`` or ``"logprob"``.
        batch_size: at most this many inputs per forward pass. Methods that run many perturbed
            copies (``smoothgrad``, ``integrated_gradients``, ``occlusion``, ``scorecam``,
            ``ablationcam``) take it as their own option and batch the copies of all images;
            for the others it splits the images (default: all images at once).
        progress: show a progress bar (over a multi-pass method's passes, else over batches).
        output: for a model whose output is not one tensor, the part that holds the logits (an
            index, a key or a callable; default: the bundle's, see :mod:`convscope.core.outputs`).
        **options: method-specific options (see ``convscope.method_info(name).options``).

    Returns:
        An :class:`~convscope.result.Explanation` with raw (N, H, W) maps at input resolution.
    """
    from convscope.models import load_model

    bundle = load_model(model, output=output)
    info = get_method(method)
    accepted = set(info.options)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise MethodError(
            f"{info.name} does not take option(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(sorted(accepted)) or 'none'}"
        )
    check_batch_size(batch_size)
    # a tensor's display pixels are made after the method's passes are queued (on a GPU they
    # would otherwise sit in front of them)
    x, pixels, labels = prepare_inputs(bundle, images, pixels=False)
    n = x.shape[0]
    unit = as_unit_target(target, bundle.model)
    run_model = bundle.model
    if unit is None:
        tgt = resolve_targets(target, n, bundle.class_names, score=score)
    else:  # a unit of a layer: the model seen through it has one output, the unit's value
        check_unit_method(info.name)
        check_hookable(bundle.model, "a unit target")
        if score != "logit":
            raise TargetError(f"a unit's value has no softmax: score={score!r} needs a class")
        tgt = resolve_targets(0, n, None)
        run_model = UnitScore(bundle.model, *unit)
    step = n
    if "batch_size" in accepted:  # a multi-pass method batches its copies itself
        if batch_size is not None:
            options["batch_size"] = batch_size
    elif batch_size is not None:
        step = batch_size

    maps, raws, outputs, indices, scores, extras = [], [], [], [], [], []
    layer_maps: list[list[torch.Tensor] | None] = []
    if info.needs_layer:
        check_hookable(bundle.model, info.name)
    with preserved(bundle.model, frozen=True), selecting(bundle.model, bundle.output) as net:
        refs = _layers(bundle, layer, x) if info.needs_layer else []
        if unit is not None:
            for ref in refs:
                if not layer_runs_before(bundle.model, x, ref, unit[1]):
                    raise LayerError(
                        f"layer {ref.spec} runs after the unit's layer {unit[1].spec}: "
                        f"{info.name} of unit {unit[0].spec} needs a layer at or before it"
                    )
        starts = range(0, n, step)
        if progress and len(starts) > 1:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=info.name, unit="batch")
        for s in starts:
            part = tgt.subset(s, min(s + step, n))
            ctx = Context(
                net if unit is None else run_model, x[s : s + step], part, refs, progress=progress
            )
            out = info.fn(ctx, **options)
            raw, up, per_layer = _to_input_size(out.maps, x.shape[-2:])
            layer_maps.append(per_layer)
            raws.append(raw)
            maps.append(up)
            outputs.append(out.output)
            extras.append(out.extras)
            indices.append(part.indices)
            scores.append(part.last_scores)

    if pixels is None and isinstance(images, torch.Tensor):
        pixels = bundle.pixels_of(x)
    maps, raws = _float32(maps, raws, x.dtype, info.name)
    output = None if any(o is None for o in outputs) else torch.cat(outputs)
    idx = None if any(i is None for i in indices) else torch.cat(indices).tolist()
    names = [bundle.class_name(i) for i in idx] if idx is not None else ["custom target"] * n
    if unit is not None:  # the output was the unit's value, not the model's classes
        output, idx, names = None, None, [unit[0].spec] * n
    return Explanation(
        maps=torch.cat(maps),
        raw_maps=torch.cat(raws),
        method=info.name,
        layer=", ".join(r.spec for r in refs) if refs else None,
        targets=idx,
        target_names=names,
        scores=torch.cat(scores) if all(s is not None for s in scores) else torch.empty(0),
        output=output,
        pixels=pixels,
        labels=labels,
        attributions=_join([e.get("attributions") for e in extras]),
        class_names=bundle.class_names,
        meta={
            "model": bundle.name,
            "family": info.family,
            "score": score,
            "unit": None if unit is None else unit[0].spec,
            "options": dict(options),
            # several layers: each layer's raw (N, h, w) map, in the order of `layer`
            "layer_maps": None if layer_maps[0] is None else _join(layer_maps),
            "extras": {
                k: _join([e.get(k) for e in extras]) for k in extras[0] if k != "attributions"
            },
        },
    )


def _float32(
    maps: list[torch.Tensor], raws: list[torch.Tensor], dtype: torch.dtype, method: str
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Maps of a float16 or bfloat16 model as float32 (the dtype of every result), refused when
    half precision overflowed or underflowed into a non-finite value: a NaN map is never returned
    silently. (float32 and float64 maps are returned as they are, with no check and no read.)"""
    if dtype not in (torch.float16, torch.bfloat16):
        return maps, raws
    maps, raws = [m.float() for m in maps], [r.float() for r in raws]
    if not all(bool(torch.isfinite(m).all()) for m in maps):
        raise MethodError(
            f"{method} on this {str(dtype).removeprefix('torch.')} model gave non-finite values "
            "(half precision overflowed); run the model in float32 (model.float())"
        )
    return maps, raws


def _join(parts: list[Any]) -> Any:
    """One batch's value, or the batches' values joined along the image axis: tensors are
    concatenated (also inside per-layer lists); anything else stays a per-batch list."""
    if len(parts) == 1:
        p = parts[0]
        return p.detach() if isinstance(p, torch.Tensor) else p
    if all(isinstance(p, torch.Tensor) and p.ndim > 0 for p in parts):
        return torch.cat([p.detach() for p in parts])
    if all(isinstance(p, list) for p in parts) and len({len(p) for p in parts}) == 1:
        return [_join(list(layer)) for layer in zip(*parts)]
    return None if all(p is None for p in parts) else parts


def compare(
    model: Any,
    images: Any,
    methods: str | Sequence[str] = "all",
    target: TargetSpec = "top1",
    layer: str | Sequence[str] | None = "auto",
    *,
    score: str = "logit",
    batch_size: int | None = None,
    progress: bool = False,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    layers: Mapping[str, str | Sequence[str]] | None = None,
    skip: bool = True,
    output: Any = None,
) -> Comparison:
    """Run several methods on the same images, targets and layer(s).

    ``methods="all"`` means every registered method. ``options`` gives method-specific options
    by method name (``{"smoothgrad": {"n_samples": 10}}``), ``layers`` a layer of its own to a
    method that must not run at ``layer`` (``{"scorecam": "_blocks.4"}``); the other arguments are
    as for :func:`explain`. A method that cannot apply to this model (a :class:`MethodError` or
    :class:`LayerError` from it) is skipped with its one-line reason (``skip=False``: its error is
    raised); bad arguments (an unknown method or layer name, options or a layer for a method not
    compared, a bad ``batch_size``) raise before any work.

    Returns:
        A :class:`~convscope.result.Comparison`: the explanations by method name, in the order
        asked, the skipped methods with their reasons, and the wall time of each method (the
        device synchronized before and after).
    """
    from convscope.core.registry import methods as registered
    from convscope.models import load_model

    bundle = load_model(model, output=output)
    names = registered() if methods == "all" else [methods] if isinstance(methods, str) else methods
    if not names:
        raise MethodError("no methods given")
    infos = [get_method(n) for n in names]  # unknown names fail before any work
    compared = {i.name for i in infos}
    options = {get_method(k).name: dict(v) for k, v in (options or {}).items()}
    stray = sorted(set(options) - compared)
    if stray:
        raise MethodError(f"options given for method(s) not compared: {', '.join(stray)}")
    own_layers = {get_method(k).name: v for k, v in (layers or {}).items()}
    stray = sorted(set(own_layers) - compared)
    if stray:
        raise MethodError(f"layers given for method(s) not compared: {', '.join(stray)}")
    for spec in [layer, *own_layers.values()]:
        for item in spec if isinstance(spec, list | tuple) else [spec]:
            if item not in (None, "auto"):
                resolve_layer(bundle.model, item)  # a wrong name is an error, not a skipped method
    check_batch_size(batch_size)
    x, pixels, labels = prepare_inputs(bundle, images)
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    steps: Any = infos
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(infos, desc="methods", unit="method")
    out = Comparison({}, {}, {})
    for info in steps:
        if progress:
            steps.set_postfix_str(info.name)
        rows, own = split_batch_size(batch_size, options.get(info.name))
        sync()
        start = time.perf_counter()
        try:
            r = explain(
                bundle,
                x,
                info.name,
                target,
                own_layers.get(info.name, layer),
                score=score,
                batch_size=rows,
                progress=progress,
                **own,
            )
        except (MethodError, LayerError) as e:
            if not skip:
                raise
            out.skipped[info.name] = str(e)
            continue
        finally:
            sync()
            out.seconds[info.name] = time.perf_counter() - start
        r.pixels, r.labels = pixels, labels
        out.explanations[info.name] = r
    return out
