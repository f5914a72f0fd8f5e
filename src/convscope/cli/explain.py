"""``convscope explain``: overlays (and raw maps) for images, and the top predictions."""

from __future__ import annotations

import argparse
import ast
from typing import Any


def parse_target(text: str):
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else text


def parse_options(items: list[str] | None, methods: list[str]) -> dict[str, dict[str, Any]]:
    """``[METHOD:]KEY=VALUE`` items -> options by method. A value is read as a Python literal
    (``10``, ``0.5``, ``(32, 32)``, ``None``) or else kept as text. Without ``METHOD:`` an option
    goes to every given method that takes it (at least one must)."""
    from convscope.core.registry import get_method
    from convscope.errors import MethodError

    infos = [get_method(m) for m in methods]
    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        key, eq, text = item.partition("=")
        if not eq or not key.strip():
            raise MethodError(f"--option {item!r} is not KEY=VALUE or METHOD:KEY=VALUE")
        owner, colon, key = key.strip().rpartition(":")
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            value = text.strip()
        takers = [get_method(owner)] if colon else [i for i in infos if key in i.options]
        for info in takers:
            if key not in info.options:
                raise MethodError(
                    f"{info.name} does not take option {key!r}; it takes: "
                    f"{', '.join(info.options) or 'none'}"
                )
            if info.name not in {i.name for i in infos}:
                raise MethodError(f"--option {item!r} is for {info.name}, which is not run")
            out.setdefault(info.name, {})[key] = value
        if not takers:
            raise MethodError(f"no method here takes option {key!r}")
    return out


def run(args: argparse.Namespace) -> int:
    import convscope
    from convscope.core.perturbed_batches import check_batch_size
    from convscope.errors import ConvscopeError

    check_batch_size(args.batch_size, "--batch-size")
    from convscope.core.registry import methods as registered

    every = args.method.strip().lower() == "all"
    methods = registered() if every else [m.strip() for m in args.method.split(",") if m.strip()]
    options = parse_options(args.option, methods)
    targets = [parse_target(t) for t in (args.target or ["top1"])]
    if len(targets) == 1:
        target = targets[0]
    elif len(targets) == len(args.images):
        target = targets
    else:
        raise ConvscopeError(
            f"{len(targets)} --target values for {len(args.images)} images; give one, or one per image"
        )
    bundle = convscope.load_model(args.model)
    if every or len(methods) > 1:
        return _run_all(args, bundle, target, methods if not every else "all", options)
    from convscope.api import split_batch_size

    rows, own = split_batch_size(args.batch_size, options.get(methods[0]) if methods else None)
    result = convscope.explain(
        bundle,
        list(args.images),
        method=methods[0] if methods else "",
        target=target,
        layer=args.layer,
        batch_size=rows,
        progress=True,
        **own,
    )
    files = result.files(raw=args.raw, cmap=args.cmap)
    from convscope.fileio import write_all

    written = write_all(args.out, files)
    preds = result.top_predictions(args.top)
    for i, label in enumerate(result.labels):
        print(f"{label}: {result.method} for '{result.target_names[i]}'")
        for rank, (idx, name, prob) in enumerate(preds[i], 1):
            print(f"  {rank}. {name:<30} {prob:7.2%}  (class {idx})")
    for path in written:
        print(f"wrote {path}")
    return 0


def _run_all(args: argparse.Namespace, bundle, target, methods, options) -> int:
    """Several methods (or all): one comparison figure per image, every method that applies."""
    import sys

    import convscope
    from convscope.fileio import write_all
    from convscope.viz.compare import comparison_figure
    from convscope.viz.render import png_bytes

    comparison = convscope.compare(
        bundle,
        list(args.images),
        methods,
        target,
        args.layer,
        batch_size=args.batch_size,
        progress=True,
        options=options,
    )
    results, skipped = comparison.explanations, comparison.skipped
    if not results:
        from convscope.errors import MethodError

        raise MethodError("no method applies to this model: " + "; ".join(skipped.values()))
    first = next(iter(results.values()))
    suffix = "all" if methods == "all" else "compare"
    files = {
        f"{label}_{suffix}.png": png_bytes(comparison_figure(results, i, cmap=args.cmap))
        for i, label in enumerate(first.labels)
    }
    written = write_all(args.out, files)
    for name, why in skipped.items():
        print(f"skipped {name}: {why}", file=sys.stderr)
    preds = first.top_predictions(args.top)
    for i, label in enumerate(first.labels):
        print(f"{label}: {len(results)} methods for '{first.target_names[i]}'")
        for rank, (idx, name, prob) in enumerate(preds[i], 1):
            print(f"  {rank}. {name:<30} {prob:7.2%}  (class {idx})")
    for path in written:
        print(f"wrote {path}")
    return 0
