"""Time convscope's ``saliency`` and ``gradcam`` against their physical limit and against peers.

Everything runs in one process, on one model object, one input batch and one list of targets:

* ``limit``: the least work the method needs, written by hand on the plain model --
  saliency: forward + ``torch.autograd.grad(score_sum, x)`` + ``|.|`` and max over channels
  (the map itself; about 1 ms);
  Grad-CAM: parameters frozen (as convscope runs its methods), forward with a minimal hook making
  the 2nd output of ``model._swish`` (convscope's default layer ``_swish@1``, the head's ReLU6) a
  leaf + ``autograd.grad(score_sum, that_output)`` (no graph before the layer, the backward stops
  at it) + the CAM arithmetic (mean, weighted sum, ReLU).
* ``convscope``: ``convscope.explain(bundle, x, method=..., target=[8 class indices])``.
* peers: captum ``Saliency(abs=True)`` + max over channels; captum ``LayerGradCam`` and torchcam
  ``GradCAM`` on ``model._swish`` (both keep the *last* call of a reused module, which here is the
  head call ``_swish@1``; the script checks that their maps equal convscope's before timing).

Timing: 3 warm-up runs of every method, then ``--reps`` rounds in which each method runs once, in
round-robin order; the median per method is reported (ms per batch).

    python benchmarks/bench_attribution.py [--reps 15] [--batch 8] [--threads 2] [--markdown]
                                           [--breakdown]

``--breakdown`` also times the pieces of ``convscope.explain`` that are not model compute.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

import convscope

TARGETS = [1, 207, 281, 340, 409, 530, 817, 954, 76, 145, 323, 430, 609, 701, 850, 999]


# --------------------------------------------------------------------------------------------
# the methods
# --------------------------------------------------------------------------------------------
def make_methods(bundle, x: torch.Tensor, targets: list[int]) -> tuple[dict, Callable[[], None]]:
    """name -> (group, zero-argument callable returning the maps); and a cleanup function."""
    model = bundle.model
    idx = torch.tensor(targets)

    # -- limits ---------------------------------------------------------------------------------
    def saliency_limit():
        xr = x.detach().requires_grad_(True)
        out = model(xr)
        (g,) = torch.autograd.grad(out.gather(1, idx[:, None]).sum(), xr)
        return g.abs().amax(dim=1)

    kept: list[torch.Tensor] = []

    params = list(model.parameters())

    def leaf_at_2nd_call(_m, _i, o):
        if len(kept) == 1:  # the 2nd call of model._swish: the head's ReLU6, made a leaf
            o = o.detach().requires_grad_(True)
        kept.append(o)
        return o

    def gradcam_limit():
        # convscope runs methods with the parameters frozen, so no graph is recorded before the
        # layer: forward, then a backward from the score to the layer only
        kept.clear()
        flags = [p.requires_grad for p in params]
        for p in params:
            p.requires_grad_(False)
        h = model._swish.register_forward_hook(leaf_at_2nd_call)
        try:
            out = model(x)
        finally:
            h.remove()
            for p, f in zip(params, flags):
                p.requires_grad_(f)
        a = kept[1]
        (g,) = torch.autograd.grad(out.gather(1, idx[:, None]).sum(), a)
        cam = (g.mean(dim=(2, 3))[:, :, None, None] * a.detach()).sum(dim=1).clamp_min(0)
        kept.clear()
        return cam

    # -- convscope ------------------------------------------------------------------------------
    def cs_saliency():
        return convscope.explain(bundle, x, method="saliency", target=targets).maps

    def cs_gradcam():
        return convscope.explain(bundle, x, method="gradcam", target=targets).raw_maps

    # -- captum ---------------------------------------------------------------------------------
    from captum.attr import LayerGradCam, Saliency

    cap_sal = Saliency(model)
    cap_gc = LayerGradCam(model, model._swish)

    def captum_saliency():
        return cap_sal.attribute(x, target=targets, abs=True).amax(dim=1)

    def captum_gradcam():
        return cap_gc.attribute(x, target=targets, relu_attributions=True)[:, 0]

    # -- torchcam: the extractor is built once, like a user would; its hooks are only enabled
    # while torchcam runs so they do not touch the other methods' forwards -----------------------
    from torchcam.methods import GradCAM

    tc = GradCAM(model, target_layer="_swish")
    tc.disable_hooks()

    def torchcam_gradcam():
        tc.enable_hooks()
        try:
            scores = model(x)
            (cam,) = tc(class_idx=targets, scores=scores, normalized=False)
        finally:
            tc.disable_hooks()
            tc.reset_hooks()  # drop the references to this forward's graph
        return cam

    def cleanup():
        tc.remove_hooks()

    methods = {
        "saliency limit": ("saliency", saliency_limit),
        "convscope saliency": ("saliency", cs_saliency),
        "captum Saliency": ("saliency", captum_saliency),
        "gradcam limit": ("gradcam", gradcam_limit),
        "convscope gradcam": ("gradcam", cs_gradcam),
        "captum LayerGradCam": ("gradcam", captum_gradcam),
        "torchcam GradCAM": ("gradcam", torchcam_gradcam),
    }
    return methods, cleanup


def check_agreement(methods: dict) -> list[str]:
    """Every method of a group must give the same maps as its limit (else the timing is moot)."""
    notes = []
    ref = {}
    for name, (group, fn) in methods.items():
        m = fn().detach()
        if group not in ref:
            ref[group] = (name, m)
            continue
        rname, r = ref[group]
        if m.shape != r.shape:
            notes.append(f"{name}: shape {tuple(m.shape)} vs {rname} {tuple(r.shape)}")
            continue
        err = (m - r).abs().max().item() / max(r.abs().max().item(), 1e-12)
        if err > 1e-4:
            raise SystemExit(f"{name} disagrees with {rname}: max rel. error {err:.2e}")
    return notes


# --------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------
def time_methods(methods: dict, reps: int, warmup: int = 3) -> dict[str, list[float]]:
    for _ in range(warmup):
        for _, fn in methods.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in methods}
    for r in range(reps):
        names = list(methods)
        k = r % len(names)  # rotate the starting method each round
        for name in names[k:] + names[:k]:
            fn = methods[name][1]
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def table(methods: dict, times: dict[str, list[float]], markdown: bool) -> str:
    med = {n: statistics.median(t) for n, t in times.items()}
    rows = []
    for group in ("saliency", "gradcam"):
        names = [n for n, (g, _) in methods.items() if g == group]
        limit = med[f"{group} limit"]
        peers = [n for n in names if not n.startswith(("convscope", f"{group} limit"))]
        fastest = min(peers, key=med.__getitem__)
        for n in names:
            q1, q3 = _quartiles(times[n])
            vs_peer = "" if n == f"{group} limit" else f"{med[n] / med[fastest]:.2f}x"
            lo = min(times[n])
            rows.append(
                (
                    n,
                    f"{med[n]:.1f}",
                    f"{q1:.1f}-{q3:.1f}",
                    f"{lo:.1f}",
                    f"{med[n] / limit:.2f}x",
                    vs_peer,
                )
            )
    head = ("method", "median ms/batch", "IQR ms", "min ms", "/ limit", "/ fastest peer")
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["--:"] * 5) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
        fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w[i]}}}" for i in range(len(head)))
        lines = [fmt.format(*head), fmt.format(*("-" * x for x in w))]
        lines += [fmt.format(*r) for r in rows]
    return "\n".join(lines)


def _quartiles(t: list[float]) -> tuple[float, float]:
    if len(t) < 4:
        return min(t), max(t)
    q = statistics.quantiles(t, n=4)
    return q[0], q[2]


# --------------------------------------------------------------------------------------------
# where convscope's time goes (--breakdown)
# --------------------------------------------------------------------------------------------
def breakdown(bundle, x: torch.Tensor, targets: list[int], reps: int) -> list[tuple[str, float]]:
    """Median ms of each non-model piece of ``explain``, each run alone in a loop."""
    import inspect

    from convscope.core.guard import preserved
    from convscope.core.layers import resolve_layer
    from convscope.core.recorder import Recorder
    from convscope.core.registry import get_method
    from convscope.core.targets import resolve_targets
    from convscope.data.inputs import prepare_inputs
    from convscope.runner import _layers

    model = bundle.model
    n = max(reps, 30)

    def med(fn) -> float:
        for _ in range(3):
            fn()
        t = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            t.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(t)

    def guard():
        with preserved(model):
            pass

    def options():
        info = get_method("gradcam")
        set(inspect.signature(info.fn).parameters) - {"ctx"}

    n_mod = len(list(model.modules()))
    tgt = resolve_targets(targets, x.shape[0], bundle.class_names)
    out = model(x).detach()
    raw = torch.rand(x.shape[0], 7, 7)
    sal = torch.rand(x.shape[0], 224, 224)
    head = torch.rand(x.shape[0], 1280, 7, 7)

    rows = [
        (f"model-state guard `preserved` (snapshot + restore, {n_mod} modules)", med(guard)),
        ("method lookup + option inspection (inspect.signature)", med(options)),
        (
            "prepare_inputs (detach/to + pixels_of: denormalize to uint8)",
            med(lambda: prepare_inputs(bundle, x)),
        ),
        (
            "resolve_targets (8 ints)",
            med(lambda: resolve_targets(targets, x.shape[0], bundle.class_names)),
        ),
        (
            "layer resolution `_layers` (dict(named_modules()))",
            med(lambda: _layers(bundle, "auto", x)),
        ),
        ("Target.scores (python loop, tensor, gather)", med(lambda: tgt.scores(out))),
        (
            "Recorder enter/exit (resolve + register/remove hook)",
            med(
                lambda: (
                    Recorder(model, [resolve_layer(model, "_swish@1")], gradients=True)
                    .__enter__()
                    .remove()
                )
            ),
        ),
        ("Recorder clone of _swish@1 output (8x1280x7x7)", med(lambda: head.clone())),
        (
            "upsampling 7x7 -> 224x224 (bilinear)",
            med(
                lambda: F.interpolate(
                    raw[:, None], size=(224, 224), mode="bilinear", align_corners=False
                )
            ),
        ),
        (
            "class names (8x bundle.class_name)",
            med(lambda: [bundle.class_name(i) for i in targets]),
        ),
        (
            "torch.cat of the one-batch lists (maps, raw_maps, output, ...)",
            med(lambda: cats(sal, out)),
        ),
    ]
    return rows


def cats(maps: torch.Tensor, out: torch.Tensor) -> None:
    torch.cat([maps]), torch.cat([maps]), torch.cat([out]), torch.cat([out[:, 0]])


def what_if(
    bundle, x: torch.Tensor, targets: list[int], reps: int
) -> list[tuple[str, float, float]]:
    """Grad-CAM limit vs the same computation with no autograd graph before the layer (parameters
    frozen, the recorded output made a leaf that requires grad): (name, median ms, min ms)."""
    model = bundle.model
    idx = torch.tensor(targets)
    kept: list[torch.Tensor] = []

    def hook(_m, _i, o):
        if len(kept) == 1 and not o.requires_grad:  # the 2nd call: make it the graph's leaf
            o = o.detach().requires_grad_(True)
        kept.append(o)
        return o

    def run(freeze: bool) -> torch.Tensor:
        kept.clear()
        flags = [p.requires_grad for p in model.parameters()]
        if freeze:
            for p in model.parameters():
                p.requires_grad_(False)
        h = model._swish.register_forward_hook(hook)
        try:
            out = model(x)
        finally:
            h.remove()
            for p, f in zip(model.parameters(), flags):
                p.requires_grad_(f)
        a = kept[1]
        (g,) = torch.autograd.grad(out.gather(1, idx[:, None]).sum(), a)
        return (g.mean(dim=(2, 3))[:, :, None, None] * a.detach()).sum(dim=1).clamp_min(0)

    assert torch.allclose(run(False), run(True), rtol=1e-4, atol=1e-5)
    t: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(2):
        run(False), run(True)
    for r in range(reps):
        for k in (False, True) if r % 2 == 0 else (True, False):
            t0 = time.perf_counter()
            run(k)
            t[k].append((time.perf_counter() - t0) * 1e3)
    return [
        (
            "gradcam, parameters requiring grad (graph from the input)",
            statistics.median(t[False]),
            min(t[False]),
        ),
        (
            "same, parameters frozen (the table's limit; convscope's way)",
            statistics.median(t[True]),
            min(t[True]),
        ),
    ]


# --------------------------------------------------------------------------------------------
def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        name = next(
            ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")
        )
    except Exception:
        name = platform.processor() or platform.machine()
    return name


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=15, help="timed rounds (default 15)")
    p.add_argument("--batch", type=int, default=8, help="images per batch (default 8)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--markdown", action="store_true", help="print a GitHub table")
    p.add_argument("--breakdown", action="store_true", help="also time explain's non-model pieces")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if not 1 <= a.batch <= len(TARGETS):
        p.error(f"--batch must be 1..{len(TARGETS)}")

    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore")
    torch.manual_seed(a.seed)
    bundle = convscope.load_model("efficientnet_lite0")
    x = torch.randn(a.batch, 3, 224, 224)
    targets = TARGETS[: a.batch]

    methods, cleanup = make_methods(bundle, x, targets)
    try:
        notes = check_agreement(methods)
        t0 = time.perf_counter()
        times = time_methods(methods, a.reps)
        elapsed = time.perf_counter() - t0
        rows = breakdown(bundle, x, targets, a.reps) if a.breakdown else []
        whatif = what_if(bundle, x, targets, a.reps) if a.breakdown else []
    finally:
        cleanup()

    print(
        f"# convscope {getattr(convscope, '__version__', '?')}, torch {torch.__version__}, "
        f"{machine()}, {torch.get_num_threads()} threads, batch {a.batch}x3x224x224, "
        f"{a.reps} rounds (timing took {elapsed:.0f} s), "
        f"{datetime.date.today().isoformat()}, python {platform.python_version()}"
    )
    print(table(methods, times, a.markdown))
    print()
    print(
        "Maps: every method agrees with its limit (max rel. error <= 1e-4) on the layer/input grid."
    )
    print(
        "Peers' Grad-CAM layer: captum LayerGradCam and torchcam GradCAM hook `model._swish`, which runs"
        " twice per forward (stem @0, head @1); both keep the last call, i.e. `_swish@1`, the same"
        " layer as convscope's default."
    )
    print(
        "convscope's explain also upsamples the map to 224x224 and builds an Explanation; peers do not."
    )
    for note in notes:
        print("note:", note)
    if rows:
        print()
        print(
            "| explain piece (timed alone) | median ms |"
            if a.markdown
            else "explain piece (timed alone): median ms"
        )
        if a.markdown:
            print("|---|--:|")
        for name, ms in rows:
            print(f"| {name} | {ms:.3f} |" if a.markdown else f"  {name}: {ms:.3f}")
        print()
        print("what-if, timed interleaved (median / min ms):")
        for name, m, lo in whatif:
            print(f"  {name}: {m:.1f} / {lo:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
