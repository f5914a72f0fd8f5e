"""``convscope neighbours``: the corpus images nearest to query images in a layer's features."""

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
    nb = convscope.neighbours(
        bundle,
        args.queries,
        corpus,
        args.layer,
        k=args.k,
        metric=args.metric,
        cache_dir=args.cache,
        batch_size=args.batch_size,
        num_workers=args.workers,
        progress=True,
    )
    what = "cosine similarity" if nb.metric == "cosine" else "L2 distance"
    for label, row, scores in zip(nb.query_labels, nb.indices, nb.scores):
        print(f"{label}: ({what})")
        for i, s in zip(row.tolist(), scores.tolist()):
            print(f"  {s:8.4f}  [{i}] {corpus.label(i)}")
    if args.out:
        out = Path(args.out)
        write_all(out.parent, {out.name: png_bytes(nb.figure(corpus, bundle))})
        print(f"wrote {out}")
    return 0
