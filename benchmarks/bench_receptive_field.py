"""Receptive fields on EfficientNet-Lite0: the traced pass, every layer, and box lookups.

In one process, on the bundled EfficientNet-Lite0 at 224 x 224, medians over ``--reps`` rounds:

- one plain no-grad forward pass of one image (the reference: the trace is one such pass);
- ``receptive_fields(model, "all")`` from a cold cache (every layer call with a 4-D map);
- ``receptive_field(model, layer)`` called once per layer, one after the other, from a cold cache
  (the first call traces, the others are lookups), total;
- ``rf.box(i, j)`` per call, and ``rf.boxes(positions)`` per box for 100,000 positions.

    python benchmarks/bench_receptive_field.py [--reps 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    import convscope
    from convscope.inside import receptive_field as rfmod

    torch.set_num_threads(args.threads)
    bundle = convscope.load_model("efficientnet_lite0")
    model = bundle.model
    x = torch.zeros(1, 3, 224, 224)
    labels = list(convscope.receptive_fields(bundle, "all", 224))  # warm-up, and the layer list
    times: dict[str, list[float]] = {}

    def timed(name: str, fn) -> None:
        t = time.perf_counter()
        fn()
        times.setdefault(name, []).append(time.perf_counter() - t)

    def every_layer() -> None:
        for label in labels:
            convscope.receptive_field(bundle, label, 224)

    rf = convscope.receptive_field(bundle, "_blocks.4", 224)
    h, w = rf.map_size
    g = torch.Generator().manual_seed(0)
    pos = torch.stack(
        [
            torch.randint(0, h, (100_000,), generator=g),
            torch.randint(0, w, (100_000,), generator=g),
        ],
        dim=1,
    )
    pairs = pos[:10_000].tolist()

    for _ in range(args.reps):
        with torch.no_grad():
            timed("plain forward, 1 image", lambda: model(x))
        rfmod._CACHE.clear()
        timed(
            'receptive_fields(model, "all"), cold',
            lambda: convscope.receptive_fields(bundle, "all", 224),
        )
        rfmod._CACHE.clear()
        timed(f"receptive_field for each of {len(labels)} layers, cold", every_layer)
        timed("rf.box(i, j), per call (10,000 calls)", lambda: [rf.box(i, j) for i, j in pairs])
        timed("rf.boxes(positions), per box (100,000 boxes)", lambda: rf.boxes(pos))

    per_call = {
        "rf.box(i, j), per call (10,000 calls)": 10_000,
        "rf.boxes(positions), per box (100,000 boxes)": 100_000,
    }
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), EfficientNet-Lite0, 224 x 224, "
        f"{len(labels)} layer calls with 4-D maps, medians of {args.reps}"
    )
    print("| what | time |")
    print("|---|---|")
    for name, ts in times.items():
        m = statistics.median(ts)
        if name in per_call:
            print(f"| {name} | {m / per_call[name] * 1e6:.2f} µs |")
        else:
            print(f"| {name} | {m * 1e3:.0f} ms |")


if __name__ == "__main__":
    main()
