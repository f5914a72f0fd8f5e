"""Memory over many calls: every method, ``--calls`` times each, in one process, one call in ten
failing on purpose (a class index out of range, an unknown layer, an option the method does not
take); the resident memory (and on CUDA the allocated device memory) after a warm-up and at the
end.

    python benchmarks/bench_memory.py [--model tiny|lite0] [--device cpu|cuda] [--calls 1000]

A leak of a few hundred bytes per call (a hook, a graph or a cached tensor kept by mistake) shows
as megabytes after thousands of calls; the target is under 5 MB of growth after the warm-up.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

import torch

import convscope
from convscope.errors import ConvscopeError

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

OPTIONS = {
    "tiny": {"occlusion": {"window": 8, "stride": 8}, "integrated_gradients": {"steps": 8}},
    "lite0": {
        "occlusion": {"window": 56, "stride": 56},
        "integrated_gradients": {"steps": 8},
        "smoothgrad": {"n_samples": 8},
    },
}
LAYERS = {"lite0": {"scorecam": "_blocks.0._swish", "ablationcam": "_blocks.0._swish"}}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def failing_call(bundle, x, method: str, k: int) -> None:
    """One of three bad calls; each must raise a ConvscopeError."""
    bad = [
        {"target": [10**6] * x.shape[0]},
        {"layer": "no_such_layer"} if convscope.method_info(method).needs_layer else {"nope": 1},
        {"nope": 1},
    ][k % 3]
    try:
        convscope.explain(bundle, x, method, **bad)
    except ConvscopeError:
        return
    raise SystemExit(f"{method} {bad}: expected an error")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["tiny", "lite0"], default="tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    if a.model == "tiny":
        from tests.models import TinyCNN, tiny_input

        bundle = convscope.load_model(TinyCNN().eval().to(dev))
        x = tiny_input(2, 32).to(dev)
    else:
        bundle = convscope.load_model("efficientnet_lite0", device=dev)
        x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(dev)
    cuda = dev.type == "cuda"
    rows = []
    t_all = time.perf_counter()
    for method in convscope.methods():
        opts = OPTIONS[a.model].get(method, {})
        layer = LAYERS.get(a.model, {}).get(method, "auto")
        start = mid = 0.0
        dev_mid = 0
        t0 = time.perf_counter()
        for i in range(a.calls):
            if i % 10 == 9:
                failing_call(bundle, x, method, i // 10)
            else:
                convscope.explain(bundle, x, method, target=[1, 2], layer=layer, **opts)
            if i == 0:
                start = rss_mb()
            if i == a.warmup - 1:
                gc.collect()
                mid = rss_mb()
                dev_mid = torch.cuda.memory_allocated() if cuda else 0
        gc.collect()
        end = rss_mb()
        dev_growth = (torch.cuda.memory_allocated() - dev_mid) / 2**20 if cuda else 0.0
        rows.append(
            (
                method,
                f"{start:.0f}",
                f"{mid:.0f}",
                f"{end:.0f}",
                f"{end - mid:+.1f}",
                f"{dev_growth:+.2f}" if cuda else "—",
                f"{(time.perf_counter() - t0) / a.calls * 1e3:.1f}",
            )
        )
        print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    print(
        f"# {a.model} on {a.device}, {a.calls} calls per method (every 10th failing), warm-up "
        f"{a.warmup}, torch {torch.__version__}, {time.perf_counter() - t_all:.0f} s in all"
    )
    print(
        "| method | RSS after 1 call MB | after warm-up MB | at the end MB | growth after "
        "warm-up MB | CUDA allocated growth MB | ms per call |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
