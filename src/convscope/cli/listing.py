"""``convscope models | methods | samples | layers``: listings."""

from __future__ import annotations

import argparse


def models(args: argparse.Namespace) -> int:
    from convscope.models import list_models as registered

    for name, desc in registered().items():
        print(f"{name:<22} {desc}")
    print(
        f"{'torchvision:<arch>':<22} any torchvision classifier (needs torchvision and its weights)"
    )
    print(f"{'timm:<arch>':<22} any timm model (needs timm and its weights)")
    print(f"{'PATH.pt':<22} a TorchScript file")
    return 0


def methods(args: argparse.Namespace) -> int:
    from convscope.core.registry import method_info
    from convscope.core.registry import methods as names

    for name in names():
        info = method_info(name)
        print(f"{name:<16} {info.family:<9} {info.summary}  [{info.passes}]")
    return 0


def samples(args: argparse.Namespace) -> int:
    from convscope.data.samples import samples as listed

    for name, desc in listed().items():
        print(f"sample:{name:<22} {desc}")
    return 0


def layers(args: argparse.Namespace) -> int:
    import torch

    import convscope
    from convscope.errors import ConvscopeError

    bundle = convscope.load_model(args.model)
    size = args.input_size
    if size is None:
        pre = bundle.preprocess
        size = getattr(pre, "crop", 224)
    if size < 1:
        raise ConvscopeError("--input-size must be positive")
    example = torch.zeros(1, 3, size, size, device=bundle.device)
    rows = convscope.list_layers(bundle.model, example)
    from convscope.core.recorder import is_torchscript

    scripted = is_torchscript(bundle.model)
    shown = [(r.name, r.type, _shape(r.output_shape, scripted), f"{r.params:,}") for r in rows]
    head = ("layer", "type", "output shape", "params")
    widths = [max(len(h), *(len(s[i]) for s in shown)) for i, h in enumerate(head)]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths))
    print(line)
    print("-" * len(line))
    for s in shown:
        print("  ".join(v.ljust(w) for v, w in zip(s, widths)))
    if bundle.default_layer:
        print(f"\ndefault CAM layer: {bundle.default_layer}")
    if scripted:
        print(
            "\nTorchScript model: no output shapes and no layer methods (both need hooks on the "
            "layers, which TorchScript does not support); saliency, smoothgrad, "
            "integrated_gradients and occlusion run on it"
        )
    return 0


def _shape(shape, scripted: bool = False) -> str:
    if shape is None:
        return "-" if scripted else "(not run)"
    if isinstance(shape, tuple) and all(isinstance(s, int) for s in shape):
        return "x".join(str(s) for s in shape)
    return str(shape)
