"""Feature visualization against its physical limit, and batch scaling, on EfficientNet-Lite0.

The limit of ``steps`` optimization steps is ``steps`` x (one forward + one backward to the input)
of the plain model on the same batch: parameters frozen, a leaf input that requires grad, one
logit per image, ``torch.autograd.grad`` to the input, nothing else. convscope is the public front
door ``convscope.visualize(bundle, objectives, steps=..., preset="lucid")``: the Fourier
parameterization and its colour matrix, the sigmoid, the transforms (one affine resampling per
image), the bundle's preprocessing, the Recorder where a layer is read, the objectives, Adam, the
dry run that checks every name and shape first, and the final forward pass that scores the result.
Each round times every entry once, the first entry rotated; the table gives medians.

  python benchmarks/bench_featurevis.py [--steps 32] [--rounds 5] [--batches 1,8,32]
      [--scaling-steps 4] [--scaling-kinds class,channel:_blocks.4,...] [--threads 2]
  python benchmarks/bench_featurevis.py --early-stop [--rounds 3] [--scaling-steps 4]

The limit column of the scaling table is always the class logit's: for a channel objective the
backward pass stops at its layer, so the ratio flatters channels (the speed-up column does not).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import convscope

CLASSES = [130, 1, 323, 779, 967, 951, 985, 980]  # flamingo, goldfish, monarch, school bus, ...


def limit(model: torch.nn.Module, n: int, steps: int, size: int = 224) -> float:
    x = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    x.requires_grad_(True)
    idx = torch.tensor([CLASSES[i % len(CLASSES)] for i in range(n)])
    rows = torch.arange(n)
    t = time.perf_counter()
    for _ in range(steps):
        out = model(x)
        (g,) = torch.autograd.grad(out[rows, idx].sum(), x)
    return time.perf_counter() - t


def ours(bundle, n: int, steps: int, kind: str = "class", size: int = 224) -> float:
    """One ``visualize`` call on ``n`` objectives: classes, or channels 0..n-1 of the layer in
    ``kind = "channel:LAYER"``."""
    if kind == "class":
        objectives = [f"class:{CLASSES[i % len(CLASSES)]}" for i in range(n)]
    else:
        layer = kind.split(":", 1)[1]
        objectives = [f"channel:{layer}:{k}" for k in range(n)]
    t = time.perf_counter()
    convscope.visualize(bundle, objectives, steps=steps, size=size, preset="lucid")
    return time.perf_counter() - t


def channel_steps(model: torch.nn.Module, layer: str, stop: bool, n: int, steps: int) -> float:
    """``steps`` x (forward + backward to the input) of channels 0..n-1's mean at ``layer``, on a
    batch of n, the forward pass whole or ended at the layer (``Recorder(stop=True)``)."""
    from convscope.core.recorder import Recorder

    x = torch.randn(n, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    x.requires_grad_(True)
    rows = torch.arange(n)
    t = time.perf_counter()
    with Recorder(model, [layer], stop=stop) as rec:
        for _ in range(steps):
            rec.clear()
            rec.forward(x)
            a = rec.activation(layer)
            (g,) = torch.autograd.grad(a[rows, rows].mean(dim=(1, 2)).sum(), x)
    return time.perf_counter() - t


def early_stop(model: torch.nn.Module, rounds: int, steps: int, n: int = 8) -> None:
    layers = ["_blocks.4", "_blocks.9", "_blocks.13"]
    times: dict[tuple[str, bool], list[float]] = {}
    channel_steps(model, layers[0], True, 2, 1)
    for _ in range(rounds):
        for layer in layers:
            for stop in (False, True):
                times.setdefault((layer, stop), []).append(
                    channel_steps(model, layer, stop, n, steps)
                )
    print(f"Early stop: {steps} steps of {n} channel objectives, 224 px (medians of {rounds}):")
    print()
    print("| layer | whole forward s | stopped at the layer s | ratio |")
    print("|---|--:|--:|--:|")
    for layer in layers:
        f = statistics.median(times[(layer, False)])
        s = statistics.median(times[(layer, True)])
        print(f"| {layer} | {f:.2f} | {s:.2f} | {s / f:.2f}x |")


def _load() -> str:
    try:
        with open("/proc/loadavg") as fh:
            return fh.read().split()[0]
    except OSError:
        return "?"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--scaling-steps", type=int, default=4)
    p.add_argument(
        "--scaling-kinds",
        default="class,channel:_blocks.4,channel:_blocks.9,channel:_blocks.13",
        help="objectives of the batch-scaling table: class, channel:LAYER (channels 0..N-1)",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--markdown", action="store_true")
    p.add_argument(
        "--early-stop",
        action="store_true",
        help="only time Recorder(stop=True) against whole forward passes (channel objectives)",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    bundle = convscope.load_model("efficientnet_lite0")
    model = bundle.model.eval()
    for q in model.parameters():
        q.requires_grad_(False)
    if args.early_stop:
        print(f"torch {torch.__version__}, {args.threads} threads, 1-min load {_load()}")
        early_stop(model, args.rounds, args.scaling_steps)
        return
    start = time.perf_counter()
    load = _load()

    entries = {
        "limit, 8 objectives": lambda: limit(model, 8, args.steps),
        "convscope lucid, 8 classes": lambda: ours(bundle, 8, args.steps),
        "convscope lucid, 8 channels of _blocks.7": lambda: ours(
            bundle, 8, args.steps, "channel:_blocks.7"
        ),
    }
    batches = [int(b) for b in args.batches.split(",")]
    kinds = args.scaling_kinds.split(",")
    for b in batches:
        entries[f"limit, batch {b}"] = lambda b=b: limit(model, b, args.scaling_steps)
        for kind in kinds:
            entries[f"{kind}, batch {b}"] = lambda b=b, kind=kind: ours(
                bundle, b, args.scaling_steps, kind
            )
    # warm up once (allocator, first-call costs)
    limit(model, 2, 1)
    ours(bundle, 2, 1)
    times: dict[str, list[float]] = {k: [] for k in entries}
    names = list(entries)
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for k in order:
            times[k].append(entries[k]())
    med = {k: statistics.median(v) for k, v in times.items()}
    end_load = _load()
    env = (
        f"convscope {convscope.__version__}, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}, {args.threads} threads, "
        f"{time.strftime('%Y-%m-%d')}; {args.rounds} rounds, {time.perf_counter() - start:.0f} s; "
        f"1-min load {load} at the start, {end_load} at the end"
    )
    lim = med["limit, 8 objectives"]
    print(env)
    print()
    print(f"8 objectives, 224 px, {args.steps} steps (one call, all costs included):")
    print()
    print("| entry | median s | / limit (<= 1.15) |")
    print("|---|--:|--:|")
    for k in names[:3]:
        ratio = med[k] / lim
        mark = "" if k.startswith("limit") else (" ✓" if ratio <= 1.15 else " ✗")
        print(f"| {k} | {med[k]:.2f} | {ratio:.2f}x{mark} |")
    print()
    print(
        f"Batch scaling, {args.scaling_steps} steps, 224 px, preset lucid (ms per image and "
        f"step, whole call; speed-up: per-image time at batch {batches[0]} / at this batch):"
    )
    print()
    print("| objectives | batch | convscope ms/img-step | speed-up | limit ms/img-step | / limit |")
    print("|---|--:|--:|--:|--:|--:|")
    for kind in kinds:
        base = med[f"{kind}, batch {batches[0]}"] / (batches[0] * args.scaling_steps)
        for b in batches:
            lm = med[f"limit, batch {b}"] / (b * args.scaling_steps) * 1000
            cm = med[f"{kind}, batch {b}"] / (b * args.scaling_steps) * 1000
            print(
                f"| {kind} | {b} | {cm:.1f} | {base * 1000 / cm:.2f}x | {lm:.1f} | {cm / lm:.2f}x |"
            )


if __name__ == "__main__":
    main()
