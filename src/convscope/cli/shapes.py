"""``convscope shapes``: a sheet of shapes-world samples with their masks."""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from convscope.data.shapes import GRAY28, SHAPES, generate
    from convscope.fileio import write_all
    from convscope.viz.render import png_bytes
    from convscope.viz.shapes import sample_sheet

    options = dict(GRAY28) if args.gray28 else {"size": args.size, "count": (1, args.max_count)}
    batch = generate(args.n, args.seed, **options)
    captions = [
        f"{SHAPES[int(s)]} x{int(c)}" for s, c in zip(batch.labels["shape"], batch.labels["count"])
    ]
    sheet = sample_sheet(batch.images, batch.masks, captions, scale=2 if args.size >= 48 else 4)
    files = {"shapes.png": png_bytes(sheet)}
    write_all(args.out, files)
    print(Path(args.out).resolve() / "shapes.png")
    return 0
