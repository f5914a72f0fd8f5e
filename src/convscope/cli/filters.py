"""``convscope filters``: a convolution's filters as a picture (and which filters are alike)."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import convscope
    from convscope.fileio import write_all
    from convscope.viz.render import png_bytes

    view = convscope.filters(args.model, args.layer)
    if args.order != "index":
        view = view.order(args.order)
    image = view.grid(args.mode, scale=args.scale, cell=args.cell, labels=True)
    name = f"filters_{view.layer.replace('/', '_')}.png"
    (path,) = write_all(args.out, {name: png_bytes(image)})
    out, per, kh, kw = view.weights.shape
    print(
        f"{view.layer}: {out} filters of {per} x {kh} x {kw} (groups {view.groups}), drawn as "
        f"{view.resolve_mode(args.mode)}, {args.order} order -> {Path(path)}"
    )
    for i in args.similar or []:
        near = ", ".join(f"{j} ({cos:+.2f})" for j, cos in view.similar(i, args.k))
        print(f"filter {i}: most similar (cosine) {near}")
    return 0
