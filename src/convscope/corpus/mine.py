"""The mining job as a program: ``convscope mine`` runs it, and ``torchrun`` runs one per rank.

On one machine with N processes::

    convscope mine CORPUS --layer L --out DIR --nproc N        # launches torchrun for you
    torchrun --standalone --nproc_per_node=N -m convscope.corpus.mine CORPUS --layer L --out DIR

On a cluster, the same module under torchrun's multi-node rendezvous, run on every node::

    torchrun --nnodes=4 --nproc_per_node=8 --rdzv_backend=c10d \\
        --rdzv_endpoint=HOST:29400 --rdzv_id=JOB -m convscope.corpus.mine CORPUS --layer L --out DIR

(``DIR`` on a file system every node sees: each rank checkpoints there, rank 0 writes the result.)
The process group uses NCCL when CUDA is available (each rank on ``cuda:LOCAL_RANK``) and gloo
otherwise. ``--model MODULE:FACTORY`` names a Python function returning an ``nn.Module`` or a
bundle, importable in every rank, for a model that is neither registered nor TorchScript.

This module imports nothing heavy at import time: ``convscope --help`` reads its arguments.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "load_job_model", "main", "run_job"]

_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def add_arguments(p: argparse.ArgumentParser, default_model: str = "efficientnet_lite0") -> None:
    """The arguments of ``convscope mine`` (shared by the CLI and the torchrun entry point)."""
    p.add_argument(
        "corpus",
        help="an image folder, samples, samples-crops or samples-crops:N (the first N), shapes[:N]",
    )
    p.add_argument(
        "--model",
        "-m",
        default=default_model,
        help=f"model: a registered name, a TorchScript file or MODULE:FACTORY (default {default_model})",
    )
    p.add_argument(
        "--layer", "-l", action="append", required=True, help="a 4-D layer (repeat for several)"
    )
    p.add_argument("--k", "-k", type=int, default=9, help="images per channel (default 9)")
    p.add_argument(
        "--reduce", choices=("max", "mean"), default="max", help="score of a channel's map"
    )
    p.add_argument("--out", "-o", default="convscope-mine", help="output (and checkpoint) folder")
    p.add_argument("--resume", action="store_true", help="continue from a checkpoint in --out")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers decoding images")
    p.add_argument(
        "--checkpoint-every", type=int, default=50, help="batches between checkpoints (default 50)"
    )
    p.add_argument("--nproc", type=int, default=1, help="processes (launches torchrun when > 1)")
    p.add_argument(
        "--cards",
        type=int,
        default=0,
        metavar="N",
        help="also draw the top-k patch cards of the first N channels of each layer "
        "(OUT/cards/LAYER.png)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def load_job_model(spec: str) -> Any:
    """A bundle from ``--model``: what :func:`convscope.load_model` takes, or ``MODULE:FACTORY``."""
    import convscope
    from convscope.errors import ModelError

    if _FACTORY.match(spec) and not spec.startswith(("torchvision:", "timm:")):
        module, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ModelError(f"cannot import model factory {spec}: {e}") from None
        return convscope.load_model(factory())
    return convscope.load_model(spec)


def _init_distributed() -> bool:
    """Join the process group torchrun describes in the environment (True if we created it)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return True


def run_job(args: argparse.Namespace) -> int:
    """Mine, write the result and the log (rank 0), print the summary (unless launched)."""
    from convscope.corpus.mining import top_units
    from convscope.corpus.sources import open as open_corpus
    from convscope.corpus.stream import rank_and_world
    from convscope.errors import ConvscopeError

    if args.nproc > 1 and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        raise ConvscopeError("--nproc > 1 is launched by `convscope mine`, not run directly")
    created = _init_distributed()
    try:
        rank, world = rank_and_world()
        bundle = load_job_model(args.model)
        if world > 1:
            import torch

            if torch.cuda.is_available():
                bundle.model.to(f"cuda:{torch.cuda.current_device()}")
        corpus = open_corpus(args.corpus)
        out = Path(args.out)
        result = top_units(
            bundle,
            corpus,
            args.layer,
            k=args.k,
            reduce=args.reduce,
            batch_size=args.batch_size,
            num_workers=args.workers,
            checkpoint_dir=out,
            checkpoint_every=args.checkpoint_every,
            resume=args.resume,
            progress=not args.no_progress,
        )
        if rank == 0:
            from convscope.fileio import write_all

            result.save(out)
            lines = [
                f"{i}\t{label}\t{reason}"
                for (i, reason), label in zip(result.meta["skipped"], result.meta["skipped_labels"])
            ]
            files = {"mine.log": ("\n".join(["index\tfile\treason", *lines]) + "\n").encode()}
            if args.cards > 0:
                files.update(_cards(result, corpus, bundle, args.cards))
            write_all(out, files)
            if not os.environ.get("CONVSCOPE_LAUNCHED"):
                print_summary(out)
        if world > 1:
            import torch.distributed as dist

            dist.barrier()
    finally:
        if created:
            import torch.distributed as dist

            dist.destroy_process_group()
    return 0


def _cards(result: Any, corpus: Any, bundle: Any, n: int) -> dict[str, bytes]:
    from convscope.corpus.cards import layer_cards
    from convscope.viz.render import png_bytes

    files = {}
    for name, lt in result.layers.items():
        if lt.boxes is None:
            continue
        grid = layer_cards(lt, corpus, bundle, range(min(n, lt.values.shape[0])))
        safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
        files[f"cards/{safe}.png"] = png_bytes(grid)
    return files


def print_summary(out: Path) -> None:
    """What ``convscope mine`` prints once the result is written."""
    import json

    meta = json.loads((Path(out) / "topk.json").read_text())
    layers = ", ".join(f"{n} ({v['shape'][0]} channels)" for n, v in meta["layers"].items())
    print(
        f"mined the top {meta['k']} of {layers} over {meta['images']} images of "
        f"{meta['corpus']['name']} ({meta['processes']} process(es))"
    )
    n_skip = len(meta["skipped"])
    if n_skip:
        print(
            f"skipped {n_skip} image(s) that could not be decoded (listed in {Path(out) / 'mine.log'})"
        )
    print(f"wrote {Path(out) / 'topk.safetensors'} and {Path(out) / 'topk.json'}")
    cards = sorted((Path(out) / "cards").glob("*.png"))
    if cards:
        print(f"cards: {', '.join(str(c) for c in cards)}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m convscope.corpus.mine`` (one rank under torchrun)."""
    p = argparse.ArgumentParser(prog="convscope.corpus.mine", description="top-k mining (one rank)")
    add_arguments(p)
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    args = p.parse_args(argv)
    try:
        return run_job(args)
    except Exception as e:
        if args.debug:
            raise
        from convscope.errors import ConvscopeError

        msg = str(e) if isinstance(e, ConvscopeError) else f"{type(e).__name__}: {e}"
        rank = os.environ.get("RANK")
        where = (
            f" (rank {rank})"
            if rank is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1
            else ""
        )
        print(f"convscope: error{where}: {' '.join(msg.split())}", file=sys.stderr, flush=True)
        return 2 if isinstance(e, ConvscopeError) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
