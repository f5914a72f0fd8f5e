"""``convscope site``: build the static microscope site (:func:`convscope.report.site.build_site`)."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from convscope.corpus.mine import load_job_model
    from convscope.report.site import build_site

    layers = [n.strip() for n in args.layers.split(",") if n.strip()] if args.layers else None
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    units = None
    if args.units is not None:
        units = int(args.units) if args.units.isdigit() else _channels(args.units)
    r = build_site(
        load_job_model(args.model),
        args.out,
        corpus=args.corpus,
        layers=layers,
        units=units,
        images=args.images,
        k=args.k,
        methods=methods,
        featurevis_steps=args.featurevis_steps,
        featurevis_size=args.featurevis_size,
        embedding_method=args.embedding,
        cache_dir=args.cache,
        batch_size=args.batch_size,
        rebuild=args.rebuild,
        progress=not args.no_progress,
    )
    print(
        f"{r.pages} pages, {r.bytes / 1e6:.1f} MB in {r.seconds:.1f} s "
        f"({r.computed} files computed, {r.reused} reused from the last build)"
    )
    print(r.out.resolve() / "index.html")
    return 0


def _channels(text: str) -> list[int]:
    from convscope.errors import ConvscopeError

    out: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            out.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise ConvscopeError(
            f"--units takes a number or channels like 0-7,12, not {text!r}"
        ) from None
    return out
