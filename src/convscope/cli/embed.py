"""``convscope embed``: a corpus's images placed at the 2-D embedding of their features."""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    import convscope
    from convscope.corpus.mine import load_job_model
    from convscope.fileio import write_all
    from convscope.viz.render import png_bytes

    bundle = load_job_model(args.model)
    corpus = convscope.corpus.open(args.corpus)
    feats = convscope.features(
        bundle,
        corpus,
        args.layer,
        cache_dir=args.cache,
        batch_size=args.batch_size,
        num_workers=args.workers,
        progress=True,
    )
    emb = convscope.embedding(feats, args.method, seed=args.seed)
    labels = None
    if args.colour_by_class and feats.top1 is not None:
        labels = [int(feats.top1[i]) for i in emb.indices]
    canvas = convscope.embedding_map(
        emb, corpus, bundle=bundle, labels=labels, label_names=bundle.class_names, cell=args.cell
    )
    out = Path(args.out)
    write_all(out.parent, {out.name: png_bytes(canvas)})
    print(
        f"embedded {len(emb.indices)} images of {corpus.name} ({args.layer}, {args.method}, "
        f"seed {args.seed}); wrote {out} ({canvas.width} x {canvas.height})"
    )
    return 0
