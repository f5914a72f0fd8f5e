"""Check convscope on a CUDA device: every registered method on CUDA against the CPU, the model
left untouched, the synchronizations each call makes, half precision, and the parity tests run on
the device.

    python scripts/gpu_check.py [--out DIR] [--skip-tests]

For each method, on the bundled EfficientNet-Lite0 (two sample photos, two different classes):

* ``cuda vs cpu``: max |map_cuda - map_cpu| / max |map_cpu| of the raw maps (TF32 off);
* ``untouched``: the CUDA model's :func:`~convscope.core.guard.model_fingerprint` before and after;
* ``syncs``: host-device synchronizations CUDA reports during one call
  (``torch.cuda.set_sync_debug_mode("warn")``), next to the count of the plain passes;
* ``fp16`` / ``bf16``: the method on a half-precision copy of the model: float32 maps and their
  difference from the float32 model's, or the one-line refusal.

Then ``pytest tests/parity tests/cam/test_cam_family.py`` and the Lite0 integrated-gradients and
occlusion parity tests run with ``--device cuda``. Prints Markdown; exits 1 if a method fails on
CUDA, changes the model, or a parity test fails. Needs a machine with CUDA (exits 2 otherwise).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

import convscope
from convscope.core.guard import fingerprints_equal, model_fingerprint
from convscope.data.inputs import prepare_inputs

IMAGES = ["sample:coffee", "sample:astronaut"]
TARGETS = [967, 834]
SCORE_LAYER = "_blocks.0._swish"  # 32 channels: Score-CAM and Ablation-CAM stay quick
OPTIONS = {
    "smoothgrad": {"n_samples": 8, "seed": 0},
    "integrated_gradients": {"steps": 16},
    "occlusion": {"window": 56, "stride": 56},
}
LAYERS = {"scorecam": SCORE_LAYER, "ablationcam": SCORE_LAYER}
PARITY_TESTS = [
    "tests/parity",
    "tests/cam/test_cam_family.py",
    "tests/attribution/test_integrated_gradients.py::test_ig_matches_captum_lite0",
    "tests/attribution/test_occlusion.py::test_occlusion_matches_captum_lite0",
]


def run(bundle, x, method: str):
    return convscope.explain(
        bundle,
        x,
        method,
        target=TARGETS,
        layer=LAYERS.get(method, "auto"),
        **OPTIONS.get(method, {}),
    )


def count_syncs(fn) -> int:
    """Synchronizing CUDA calls made by ``fn()`` (CUDA's own count, through warnings)."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message).lower() for w in caught)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="also write the results as JSON here")
    p.add_argument("--skip-tests", action="store_true", help="do not run the parity tests")
    p.add_argument("--device", default="cuda", help=argparse.SUPPRESS)  # cpu: try the script
    a = p.parse_args(argv)
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here", file=sys.stderr)
        return 2
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    cpu = convscope.load_model("efficientnet_lite0")
    gpu = convscope.load_model("efficientnet_lite0", device=dev)
    x_cpu = prepare_inputs(cpu, IMAGES)[0]
    x_gpu = x_cpu.to(dev)
    halves = {
        dt: dataclasses.replace(gpu, model=copy.deepcopy(gpu.model).to(dt))
        for dt in (torch.float16, torch.bfloat16)
    }
    rows, failed, results = [], False, {}
    for method in convscope.methods():
        entry: dict = {}
        try:
            ref = run(cpu, x_cpu, method).raw_maps
            run(gpu, x_gpu, method)  # warm-up (kernels, caches)
            before = model_fingerprint(gpu.model)
            sync()
            t0 = time.perf_counter()
            out = run(gpu, x_gpu, method)
            sync()
            entry["ms"] = (time.perf_counter() - t0) * 1e3
            entry["untouched"] = fingerprints_equal(before, model_fingerprint(gpu.model))
            entry["on_cuda"] = out.raw_maps.device.type == dev.type
            entry["cuda_vs_cpu"] = rel(out.raw_maps, ref)
            entry["syncs"] = (
                count_syncs(lambda m=method: run(gpu, x_gpu, m)) if dev.type == "cuda" else -1
            )
            failed |= not (entry["untouched"] and entry["on_cuda"])
        except Exception as e:  # report every method, then fail
            entry["error"] = f"{type(e).__name__}: {e}"
            failed = True
        for dt, bundle in halves.items():
            key = str(dt).removeprefix("torch.")
            try:
                h = run(bundle, x_gpu, method)
                ok = h.raw_maps.dtype == torch.float32 and bool(torch.isfinite(h.raw_maps).all())
                entry[key] = f"{rel(h.raw_maps, ref):.1e}" if ok else "NOT FLOAT32/FINITE"
                failed |= not ok
            except convscope.ConvscopeError as e:
                entry[key] = f"refused: {str(e)[:60]}"
            except Exception as e:
                entry[key] = f"ERROR {type(e).__name__}: {str(e)[:60]}"
                failed = True
        results[method] = entry
        rows.append(
            f"| {method} | "
            + (
                f"{entry['cuda_vs_cpu']:.1e} | {entry['untouched']} | {entry['syncs']} | "
                f"{entry['ms']:.1f}"
                if "error" not in entry
                else f"ERROR {entry['error'][:80]} | | |"
            )
            + f" | {entry['float16']} | {entry['bfloat16']} |"
        )
        print(rows[-1], flush=True)

    name = torch.cuda.get_device_name() if dev.type == "cuda" else "CPU (trial run)"
    print(
        f"\n{name}, torch {torch.__version__}, CUDA {torch.version.cuda},"
        f" TF32 off; Lite0, {len(IMAGES)} photos, targets {TARGETS}; multi-pass options "
        f"{json.dumps(OPTIONS)}, Score-/Ablation-CAM at {SCORE_LAYER}\n"
    )
    print(
        "| method | cuda vs cpu (max rel.) | untouched | syncs per call | ms | float16 | bfloat16 |"
    )
    print("|---|--:|---|--:|--:|---|---|")
    print("\n".join(rows))
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=1))
    if not a.skip_tests:
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--device", a.device]
        code = subprocess.call(cmd + PARITY_TESTS)
        print(f"\nparity tests on cuda: {'passed' if code == 0 else 'FAILED'}")
        failed |= code != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
