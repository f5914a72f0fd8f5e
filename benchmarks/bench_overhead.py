"""Per-call overhead on a CPU: ``convscope.explain`` where the model's passes cost little.

On a GPU the passes of EfficientNet-Lite0 take a few milliseconds, so the fixed cost of a call
decides its speed. The same cost shows on a CPU when the passes are cheap: a TinyCNN or Lite0 on a
64 x 64 input, one image. For Grad-CAM (the layer "auto" picks) and saliency, round-robin, in one
process:

* ``limit``: the passes by hand (weights frozen, the layer's output made a leaf, one backward);
* ``bundle``: ``convscope.explain(bundle, x, ...)``;
* ``module``: ``convscope.explain(model, x, ...)`` on the plain ``nn.Module`` (no bundle given).

    python benchmarks/bench_overhead.py [--reps 300] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

import convscope

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def hand(model, layer_module, call: int, x, target: int, method: str):
    """The passes of one method on the plain model, nothing from convscope."""
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        if method == "saliency":
            xr = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(model(xr)[:, target].sum(), xr)
            return g.abs().amax(dim=1)
        state = {"k": 0}

        def hook(_m, _i, o):
            k = state["k"]
            state["k"] += 1
            if k == call:
                o = o.detach().requires_grad_(True)
                state["a"] = o
                return o
            return None

        h = layer_module.register_forward_hook(hook)
        try:
            out = model(x)
        finally:
            h.remove()
        a = state["a"]
        (g,) = torch.autograd.grad(out[:, target].sum(), a)
        return (g.mean(dim=(2, 3))[:, :, None, None] * a).sum(dim=1).clamp_min(0)
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)


def entries_for(model, bundle, module, call: int, x, method: str, target: int = 3) -> dict:
    return {
        "limit": lambda: hand(model, module, call, x, target, method),
        "bundle": lambda: convscope.explain(bundle, x, method, target=[target]),
        "module": lambda: convscope.explain(model, x, method, target=[target]),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from tests.models import TinyCNN

    lite0 = convscope.load_model("efficientnet_lite0")
    tiny = TinyCNN().eval()
    cases = {
        "TinyCNN": (tiny, convscope.load_model(tiny, default_layer="relu6"), "relu6", 0),
        "Lite0": (lite0.model, lite0, "_swish", 1),
    }
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    print(
        f"# torch {torch.__version__}, {a.threads} thread(s), 1 image 64 x 64, {a.reps} rounds, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    print("| model | method | limit µs | bundle µs | / limit | nn.Module µs | / bundle |")
    print("|---|---|--:|--:|--:|--:|--:|")
    for name, (model, bundle, layer, call) in cases.items():
        module = dict(model.named_modules())[layer]
        for method in ("gradcam", "saliency"):
            entries = entries_for(model, bundle, module, call, x, method)
            ref = entries["limit"]()
            for key in ("bundle", "module"):
                got = entries[key]().raw_maps
                assert torch.allclose(got, ref, rtol=1e-5, atol=1e-6 * float(ref.abs().max())), key
            times: dict[str, list[float]] = {k: [] for k in entries}
            keys = list(entries)
            for r in range(a.reps):
                for k in keys[r % 3 :] + keys[: r % 3]:
                    t0 = time.perf_counter()
                    entries[k]()
                    times[k].append((time.perf_counter() - t0) * 1e6)
            med = {k: statistics.median(v) for k, v in times.items()}
            print(
                f"| {name} | {method} | {med['limit']:.0f} | {med['bundle']:.0f} | "
                f"{med['bundle'] / med['limit']:.2f}x | {med['module']:.0f} | "
                f"{med['module'] / med['bundle']:.2f}x |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
