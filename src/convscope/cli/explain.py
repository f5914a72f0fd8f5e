"""``convscope explain``: overlays (and raw maps) for images, and the top predictions."""

from __future__ import annotations

import argparse


def parse_target(text: str):
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else text


def run(args: argparse.Namespace) -> int:
    import convscope
    from convscope.errors import ConvscopeError

    if args.batch_size < 1:
        raise ConvscopeError("--batch-size must be at least 1")
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
    if args.method == "all":
        return _run_all(args, bundle, target)
    result = convscope.explain(
        bundle,
        list(args.images),
        method=args.method,
        target=target,
        layer=args.layer,
        batch_size=args.batch_size,
        progress=True,
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


def _run_all(args: argparse.Namespace, bundle, target) -> int:
    """--method all: one comparison figure per image, every method that applies."""
    import sys

    import convscope
    from convscope.fileio import write_all
    from convscope.viz.compare import comparison_figure
    from convscope.viz.render import png_bytes

    results, skipped = convscope.compare(
        bundle, list(args.images), "all", target, args.layer, batch_size=args.batch_size
    )
    if not results:
        from convscope.errors import MethodError

        raise MethodError("no method applies to this model: " + "; ".join(skipped.values()))
    first = next(iter(results.values()))
    files = {
        f"{label}_all.png": png_bytes(comparison_figure(results, i, cmap=args.cmap))
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
