"""``convscope stats``: per-layer statistics over images (table; CSV, JSON and chart with --out)."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    import convscope

    layers = args.layers if args.layers in ("all", "blocks") else args.layers.split(",")
    stats = convscope.layer_stats(
        args.model, args.images, layers, batch_size=args.batch_size, progress=True
    )
    print(stats.table())
    if args.out:
        paths = stats.save(args.out, title=f"{args.model}, {stats.rows[0].images} image(s)")
        print(f"\nwrote {', '.join(paths)}")
    return 0
