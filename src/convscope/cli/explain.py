"""``convscope explain``: overlays (and raw maps) for images, and the top predictions."""

from __future__ import annotations

import argparse
import ast
from typing import Any


def parse_target(text: str):
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else text


def parse_output(text: str | None) -> int | str | None:
    """``--output``: an index (``0``) or a key (``logits``) of the model's output."""
    if text is None:
        return None
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


def parse_methods(text: str, flag: str = "--method") -> tuple[list[str], bool]:
    """``--method`` -> (registered names in the order given, without repeats; whether ``all``
    was among them: then every registered method, whatever else is listed)."""
    from convscope.core.registry import get_method
    from convscope.core.registry import methods as registered
    from convscope.errors import MethodError

    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise MethodError(f"{flag} is empty; give method names (`convscope methods`) or all")
    known = [get_method(n).name for n in names if n.lower() != "all"]  # unknown names fail here
    if len(known) < len(names):
        return registered(), True
    return list(dict.fromkeys(known)), False


def check_cmap(name: str) -> None:
    """A matplotlib colormap name, checked before any work (exit 2, with suggestions)."""
    from convscope.viz.render import colormap_names, is_colormap

    if not is_colormap(name):
        from convscope.errors import ConvscopeError, did_you_mean

        hint = did_you_mean(name, colormap_names())
        raise ConvscopeError(f"unknown colormap {name!r} for --cmap{hint}")


def run(args: argparse.Namespace) -> int:
    import convscope
    from convscope.core.perturbed_batches import check_batch_size
    from convscope.errors import ConvscopeError

    check_batch_size(args.batch_size, "--batch-size")
    if args.top < 0:
        raise ConvscopeError(
            f"--top must be 0 or more (predictions printed per image), not {args.top}"
        )
    check_cmap(args.cmap)
    methods, every = parse_methods(args.method)
    if args.layer != "auto":
        from convscope.core.registry import get_method
        from convscope.core.registry import methods as registered

        if not any(get_method(m).needs_layer for m in methods):
            users = [m for m in registered() if get_method(m).needs_layer]
            raise ConvscopeError(
                f"--layer {args.layer} is not used by {', '.join(methods)}; the methods that "
                f"take a layer are {', '.join(users)}"
            )
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
    bundle = convscope.load_model(args.model, output=parse_output(args.output))
    if args.layer != "auto":
        convscope.resolve_layer(bundle.model, args.layer)  # a wrong name fails before any work
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
    from convscope.viz.compare import comparison_grid
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
        f"{label}_{suffix}.png": png_bytes(
            comparison_grid(results, i, cmap=args.cmap, skipped=skipped)
        )
        for i, label in enumerate(first.labels)
    }
    written = write_all(args.out, files)
    for name, why in skipped.items():
        print(f"skipped {name}: {why}", file=sys.stderr)
    preds = first.top_predictions(args.top)
    for i, label in enumerate(first.labels):
        count = f"{len(results)} method{'s' if len(results) != 1 else ''}"
        print(f"{label}: {count} for '{first.target_names[i]}'")
        for rank, (idx, name, prob) in enumerate(preds[i], 1):
            print(f"  {rank}. {name:<30} {prob:7.2%}  (class {idx})")
    for path in written:
        print(f"wrote {path}")
    return 0
