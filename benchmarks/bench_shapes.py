"""Images per second of the shapes-world generator (convscope.data.shapes), on this machine.

    python benchmarks/bench_shapes.py [--threads 2]

Renders batches of 64 x 64 RGB images (1 to 3 shapes) and of the 28 x 28 grayscale lecture-004
setting, after one warm-up batch, and prints images/s for each batch size.
"""

from __future__ import annotations

import argparse
import time

import torch

from convscope.data.shapes import GRAY28, generate


def rate(n: int, repeats: int, **options) -> float:
    generate(n, 0, **options)  # warm-up
    start = time.perf_counter()
    for r in range(repeats):
        generate(n, 0, start=(r + 1) * n, **options)
    return n * repeats / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads")
    for n in (64, 256, 1024):
        print(f"64x64 RGB, 1-3 shapes, batch {n:5d}: {rate(n, max(1, 2048 // n)):8.0f} images/s")
    for n in (256, 1024):
        print(
            f"28x28 gray (GRAY28),  batch {n:5d}: {rate(n, max(1, 4096 // n), **GRAY28):8.0f} images/s"
        )


if __name__ == "__main__":
    main()
