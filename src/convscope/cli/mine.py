"""``convscope mine``: top-k images and patches per unit over a corpus (one process, or N under
torchrun with ``--nproc N``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from convscope.corpus.mine import print_summary, run_job

    if args.nproc <= 1:
        return run_job(args)
    from convscope.corpus.launch import launch

    out = Path(args.out)
    launch("convscope.corpus.mine", _rank_argv(args), args.nproc, out / "torchrun.log")
    print_summary(out)
    return 0


def _rank_argv(args: argparse.Namespace) -> list[str]:
    argv = [args.corpus, "--model", args.model, "--k", str(args.k), "--reduce", args.reduce]
    for layer in args.layer:
        argv += ["--layer", layer]
    argv += [
        "--out",
        args.out,
        "--batch-size",
        str(args.batch_size),
        "--workers",
        str(args.workers),
    ]
    # (no --nproc: each rank reads WORLD_SIZE, and torchrun would take --nproc for its own option)
    argv += ["--checkpoint-every", str(args.checkpoint_every), "--cards", str(args.cards)]
    if args.resume:
        argv.append("--resume")
    if args.no_progress or not sys.stderr.isatty():
        argv.append("--no-progress")
    return argv
