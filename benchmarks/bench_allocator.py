"""What ``convscope.tune_cpu_allocator()`` (glibc ``mallopt``, applied by the ``convscope`` command
line) changes: the same workload in fresh processes, with and without it, alternating.

The setting is process-wide, so each measurement is its own child process (this script run with
``--child``); children alternate (plain, tuned, plain, tuned, ...) so that a machine that gets
slower or faster during the run affects both alike. Each child loads EfficientNet-Lite0, warms up,
then times every workload ``--reps`` times and prints the medians; the table gives the median over
children and the ratio tuned / plain.

    python benchmarks/bench_allocator.py [--rounds 3] [--reps 3] [--threads 2] [--markdown]
        [--only smoothgrad,occlusion]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

WORKLOADS = {
    "no-grad forward, 32 images in passes of 16": None,
    "saliency, 8 images": ("saliency", 8, {}),
    "gradcam, 8 images": ("gradcam", 8, {}),
    "smoothgrad, 2 images, 16 samples": ("smoothgrad", 2, {"n_samples": 16, "seed": 0}),
    "occlusion, 2 images, window 48 stride 24": ("occlusion", 2, {"window": 48, "stride": 24}),
}


def child(tuned: bool, reps: int, threads: int, only: list[str]) -> dict[str, float]:
    import torch

    import convscope

    if tuned and not convscope.tune_cpu_allocator():
        raise SystemExit("no glibc mallopt here: nothing to compare")
    torch.set_num_threads(threads)
    bundle = convscope.load_model("efficientnet_lite0")
    x = torch.randn(32, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    targets = list(range(0, 1000, 31))

    def run(name: str) -> None:
        spec = WORKLOADS[name]
        if spec is None:
            with torch.no_grad():
                for part in x.split(16):
                    bundle.model(part)
            return
        method, n, options = spec
        convscope.explain(bundle, x[:n], method, target=targets[:n], **options)

    out = {}
    for name in selected(only):
        run(name)  # warm-up
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            run(name)
            times.append(time.perf_counter() - t)
        out[name] = statistics.median(times) * 1000
    return out


def selected(only: list[str]) -> list[str]:
    return [w for w in WORKLOADS if not only or any(o in w for o in only)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="pairs of child processes")
    p.add_argument("--reps", type=int, default=3, help="timed runs per workload per child")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--only", default="", help="comma-separated parts of workload names")
    p.add_argument("--child", choices=["plain", "tuned"], help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        only = [o for o in a.only.split(",") if o]
        print(json.dumps(child(a.child == "tuned", a.reps, a.threads, only)))
        return 0
    runs: dict[str, list[dict[str, float]]] = {"plain": [], "tuned": []}
    env = {**os.environ, "TQDM_DISABLE": "1"}
    for r in range(a.rounds):
        for kind in ("plain", "tuned") if r % 2 == 0 else ("tuned", "plain"):
            cmd = [sys.executable, __file__, "--child", kind, "--reps", str(a.reps)]
            cmd += ["--threads", str(a.threads), "--only", a.only]
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            runs[kind].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"# round {r + 1} {kind} done", file=sys.stderr, flush=True)
    sep = "|" if a.markdown else " "
    print(f"# {a.rounds} children each, {a.reps} timed runs per workload, {a.threads} threads")
    head = ["workload", "plain ms", "tuned ms", "tuned / plain"]
    print(sep.join(head) if not a.markdown else "| " + " | ".join(head) + " |")
    if a.markdown:
        print("|---|--:|--:|--:|")
    for name in selected([o for o in a.only.split(",") if o]):
        plain = statistics.median(c[name] for c in runs["plain"])
        tuned = statistics.median(c[name] for c in runs["tuned"])
        cells = [name, f"{plain:.0f}", f"{tuned:.0f}", f"{tuned / plain:.2f}x"]
        print("| " + " | ".join(cells) + " |" if a.markdown else "  ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
