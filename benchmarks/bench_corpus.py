"""Dataset-level benchmarks (capability C5): mining throughput against a plain forward pass over
the same DataLoader, peak memory at two corpus sizes, one rank against two, and features +
neighbours for a 10k-image corpus. Ratios are taken within one run.

    python benchmarks/bench_corpus.py throughput --images 128 --rounds 2
    python benchmarks/bench_corpus.py memory --sizes 1000 10000 --crop 64
    python benchmarks/bench_corpus.py ranks --images 128
    python benchmarks/bench_corpus.py neighbours --images 10000 --crop 64

Each part prints a markdown table row; results go to benchmarks/README.md by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lite0(crop: int):
    import convscope
    from convscope.core.bundle import Preprocess

    bundle = convscope.load_model("efficientnet_lite0")
    if crop != 224:
        scale = 256 / 224
        bundle.preprocess = Preprocess(
            resize=round(crop * scale), crop=crop, mean=(127.0,) * 3, std=(128.0,) * 3, scale=1.0
        )
    return bundle


def plain_pass(bundle, corpus, batch_size: int, workers: int) -> float:
    """The limit: the same DataLoader (decode + preprocess in workers), forward only."""
    import torch

    from convscope.corpus.sources import batches

    n_batches = (len(corpus) + batch_size - 1) // batch_size
    t = time.perf_counter()
    with torch.inference_mode():
        for b in batches(corpus, bundle, range(n_batches), batch_size, num_workers=workers):
            bundle.model(b.x)
    return time.perf_counter() - t


def throughput(args) -> None:
    import torch

    import convscope

    torch.set_num_threads(args.threads)
    bundle = lite0(args.crop)
    bundle.model.eval()
    corpus = convscope.corpus.open(f"samples-crops:{args.images}")
    layers = args.layers
    plain, mine = [], []
    for r in range(args.rounds):
        order = ("plain", "mine") if r % 2 == 0 else ("mine", "plain")
        for what in order:
            if what == "plain":
                plain.append(plain_pass(bundle, corpus, args.batch_size, args.workers))
            else:
                t = time.perf_counter()
                convscope.top_units(
                    bundle,
                    corpus,
                    layers,
                    k=9,
                    batch_size=args.batch_size,
                    num_workers=args.workers,
                )
                mine.append(time.perf_counter() - t)
    p, m = statistics.median(plain), statistics.median(mine)
    print(
        f"| {args.images} crops, {args.crop} px, batch {args.batch_size}, {args.workers} workers, "
        f"{', '.join(layers)} | {args.images / p:.1f} img/s | {args.images / m:.1f} img/s | "
        f"{p / m:.2f}x | rounds: plain {[round(x, 1) for x in plain]} s, mine "
        f"{[round(x, 1) for x in mine]} s |"
    )


def _child_memory(args) -> None:
    """Run in a child: mine, then report peak RSS (ru_maxrss) before and after."""
    import torch

    import convscope

    torch.set_num_threads(args.threads)
    bundle = lite0(args.crop)
    corpus = convscope.corpus.open(f"samples-crops:{args.images}")
    # load everything that is not per-image first (the model, the sample photos, torch kernels)
    convscope.top_units(
        bundle, corpus.head(args.batch_size), args.layers, k=9, batch_size=args.batch_size
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    r = convscope.top_units(
        bundle, corpus, args.layers, k=9, batch_size=args.batch_size, num_workers=args.workers
    )
    seconds = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "images": r.meta["images"],
                "before_mb": before / 1024,
                "peak_mb": after / 1024,
                "s": seconds,
            }
        )
    )


def memory(args) -> None:
    for n in args.sizes:
        cmd = [sys.executable, __file__, "_memory", "--images", str(n), "--crop", str(args.crop)]
        cmd += ["--batch-size", str(args.batch_size), "--workers", str(args.workers)]
        cmd += ["--threads", str(args.threads), "--layers", *args.layers]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT).stdout
        d = json.loads(out.strip().splitlines()[-1])
        print(
            f"| {d['images']} crops, {args.crop} px, {', '.join(args.layers)} | peak RSS "
            f"{d['peak_mb']:.0f} MB (after warm-up {d['before_mb']:.0f} MB) | {d['s']:.0f} s "
            f"({d['images'] / d['s']:.0f} img/s) |"
        )


def ranks(args) -> None:
    """The same mining job with --nproc 1 and --nproc 2 (CLI), alternating; results compared."""
    import torch

    import convscope

    times: dict[int, list[float]] = {1: [], 2: []}
    results = {}
    for r in range(args.rounds):
        for n in (1, 2) if r % 2 == 0 else (2, 1):
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [
                    sys.executable,
                    "-m",
                    "convscope.cli.main",
                    "mine",
                    f"samples-crops:{args.images}",
                ]
                for layer in args.layers:
                    cmd += ["--layer", layer]
                cmd += ["--out", tmp, "--batch-size", str(args.batch_size), "--workers", "0"]
                cmd += ["--nproc", str(n), "--no-progress"]
                env = dict(os.environ, OMP_NUM_THREADS=str(max(1, args.threads // n)))
                t = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=ROOT)
                times[n].append(time.perf_counter() - t)
                results[n] = convscope.load_top_units(tmp)
    same = all(
        torch.equal(getattr(results[1][lay], key), getattr(results[2][lay], key))
        for lay in results[1].layers
        for key in ("values", "image_indices", "positions")
    )
    one, two = statistics.median(times[1]), statistics.median(times[2])
    print(
        f"| {args.images} crops, {', '.join(args.layers)}, {args.threads} threads in all | "
        f"{one:.1f} s | {two:.1f} s | {one / two:.2f}x | bit-identical: {same} |"
    )


def neighbours(args) -> None:
    import numpy as np
    import torch

    import convscope
    from convscope.corpus.neighbours import knn

    torch.set_num_threads(args.threads)
    bundle = lite0(args.crop)
    corpus = convscope.corpus.open(f"samples-crops:{args.images}")
    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        f = convscope.features(
            bundle,
            corpus,
            args.feature_layer,
            cache_dir=cache,
            batch_size=args.batch_size,
            num_workers=args.workers,
        )
        t_feat = time.perf_counter() - t
        t = time.perf_counter()
        again = convscope.features(bundle, corpus, args.feature_layer, cache_dir=cache)
        t_hit = time.perf_counter() - t
        x = np.asarray(again.array, dtype=np.float32)
        t = time.perf_counter()
        rows, _ = knn(x, x, 8, "cosine")
        t_knn = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        size = os.path.getsize(f.path) / 2**20
    assert (rows[:, 0] == np.arange(len(x))).mean() > 0.99  # each image is its own nearest
    print(
        f"| {args.images} crops, {args.crop} px, {args.feature_layer} ({x.shape[1]}-d) | features "
        f"{t_feat:.0f} s ({args.images / t_feat:.0f} img/s), cache {size:.0f} MB, cache hit "
        f"{t_hit * 1000:.0f} ms | all {len(x)} x 8 exact cosine neighbours (faiss) {t_knn:.1f} s | "
        f"peak RSS {peak:.0f} MB |"
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("part", choices=("throughput", "memory", "_memory", "ranks", "neighbours"))
    p.add_argument("--images", type=int, default=128)
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--layers", nargs="+", default=["_blocks.10", "_swish@1"])
    p.add_argument("--feature-layer", default="_swish@1")
    args = p.parse_args()
    {
        "throughput": throughput,
        "memory": memory,
        "_memory": _child_memory,
        "ranks": ranks,
        "neighbours": neighbours,
    }[args.part](args)


if __name__ == "__main__":
    main()
