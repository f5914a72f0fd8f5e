"""Time ``convscope.layer_stats`` and ``convscope.activations`` against one plain forward pass.

The issue's target: on the bundled EfficientNet-Lite0, batch 8, each at most 1.10x one plain
forward pass of the same batch. Everything runs in one process, on one model object and one batch
(``torch.randn``, seed 0, already preprocessed, so no decoding is timed):

* ``forward``: ``model(x)`` under ``torch.no_grad()``, the limit (every statistic and every
  recorded map needs the forward pass; nothing else is unavoidable);
* ``layer_stats(all)``: ``convscope.layer_stats(bundle, x)``: every 4-D layer (convolutions,
  BatchNorms, ReLU6s, pooling: 132 calls on Lite0), reduced in the recorder's hook;
* ``layer_stats(blocks)``: the block-level layers (23: stem, the 16 blocks, head);
* ``activations(pipeline)``: ``convscope.activations(bundle, x, layers=[the 6 stages])`` (the
  stages named, so the one-image trace that finds them for ``layers="pipeline"`` is not timed;
  it is timed separately as ``activations("pipeline")``);
* ``activations(all blocks)``: the 23 block-level layers recorded;
* ``one read of every output``: the forward with the same 132 layers watched by the recorder,
  each output read once by a numpy sum and nothing else: a floor for any statistic of every
  layer that reads the outputs (``layer_stats`` reads each four times: two comparisons with their
  counts, a sum, a per-channel maximum).

Timing: 2 warm-up runs of each, then ``--reps`` rounds in which each entry runs once, the first
entry rotated each round; medians in ms and as a ratio to ``forward``. ``--cpu-time`` times with
the process's CPU time instead of the wall clock: with ``--threads 1`` it is the measure that a
loaded machine disturbs least (a waiting process spends no CPU time).

    python benchmarks/bench_inside.py [--reps 9] [--batch 8] [--threads 2] [--cpu-time] [--markdown]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import convscope
from convscope.inside.activations import pipeline_layers
from convscope.inside.stats import stat_layers


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=9)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cpu-time", action="store_true", help="process CPU time, not wall clock")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    convscope.tune_cpu_allocator()  # as the CLI does
    bundle = convscope.load_model("efficientnet_lite0")
    model = bundle.model
    x = torch.randn(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    stages = pipeline_layers(model, x[:1])
    blocks = [c.spec for c in stat_layers(model, x[:1], "blocks")]
    n_all = len(stat_layers(model, x[:1], "all"))

    def forward():
        with torch.no_grad():
            return model(x)

    from convscope.core.layers import LayerRef
    from convscope.core.recorder import Recorder
    from convscope.inside.stats import _eligible

    watched = [LayerRef(n, m, None) for n, m in _eligible(model, "all").items()]

    def one_read(name, k, out):
        if isinstance(out, torch.Tensor) and out.ndim == 4:
            out.detach().numpy().sum()

    def floor():
        with torch.no_grad(), Recorder(model, watched, reduce=one_read):
            model(x)

    entries = {
        "forward": forward,
        f"layer_stats(all: {n_all} layers)": lambda: convscope.layer_stats(bundle, x, batch_size=8),
        f"layer_stats(blocks: {len(blocks)})": lambda: convscope.layer_stats(
            bundle, x, "blocks", batch_size=8
        ),
        f"activations({len(stages)} stages named)": lambda: convscope.activations(
            bundle, x, stages
        ),
        'activations("pipeline")': lambda: convscope.activations(bundle, x),
        f"activations({len(blocks)} block layers)": lambda: convscope.activations(
            bundle, x, blocks
        ),
        f"one read of every output ({n_all} layers)": floor,
    }
    # the results agree with the plain forward: the recorded head equals the model's
    a = convscope.activations(bundle, x, ["_swish@1"])
    torch.testing.assert_close(a.output, forward())
    for fn in entries.values():
        fn()
        fn()
    clock = time.process_time if args.cpu_time else time.perf_counter
    times: dict[str, list[float]] = {k: [] for k in entries}
    names = list(entries)
    for r in range(args.reps):
        order = names[r % len(names) :] + names[: r % len(names)]
        for k in order:
            t = clock()
            entries[k]()
            times[k].append(clock() - t)
    base = statistics.median(times["forward"])
    how = "CPU time" if args.cpu_time else "wall clock"
    head = (
        f"Lite0, batch {args.batch}, {args.threads} threads, {args.reps} rounds, {how}, "
        f"torch {torch.__version__}, {platform.machine()}"
    )
    if args.markdown:
        print(f"*{head}*\n")
        print("| entry | median ms | x forward |")
        print("|---|---|---|")
    else:
        print(head)
    for k in names:
        med = statistics.median(times[k]) * 1000
        if args.markdown:
            print(f"| {k} | {med:.0f} | {med / 1000 / base:.2f} |")
        else:
            print(f"{k:<34} {med:8.0f} ms  {med / 1000 / base:5.2f}x")


if __name__ == "__main__":
    main()
