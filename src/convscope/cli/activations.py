"""``convscope activations``: feature maps of layers on images, as grids and a pipeline strip."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    import convscope
    from convscope.errors import ConvscopeError

    layers = "pipeline" if args.layer == "pipeline" else [s for s in args.layer.split(",") if s]
    if args.top is not None and args.top < 1:
        raise ConvscopeError("--top must be at least 1")
    acts = convscope.activations(
        args.model, args.images, layers, batch_size=args.batch_size, progress=True
    )
    sort = None if args.sort == "none" else args.sort
    paths = acts.save(
        args.out,
        top=args.top if args.top is not None else "auto",
        sort=sort,
        scale=args.scale,
        strip=not args.no_strip,
    )
    for name in acts.layers:
        c, h, w = acts[name].shape[1:]
        top = args.top if args.top is not None else acts.auto_top(name)
        shown = f"{min(top, c)} strongest by {sort}" if top and sort else f"{min(top or c, c)}"
        print(f"{name}: {c} x {h} x {w}, {shown} of {c} channels drawn")
    print(f"wrote {len(paths)} file(s) under {args.out}")
    return 0
