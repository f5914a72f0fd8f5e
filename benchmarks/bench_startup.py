"""Where the start of ``convscope explain sample:coffee --method gradcam`` goes, before and after.

Two trees of convscope's sources are compared: this checkout's ``src/`` ("after") and the sources
of a git revision ("before", ``--before REF``, extracted with ``git archive`` into a temporary
folder), each put first on ``PYTHONPATH`` of fresh child processes. Children alternate (before,
after, after, before, ...) so that a machine that gets slower or faster during the run affects both
alike. Each round runs, for each tree:

- the command itself, ``python -m convscope.cli.main explain sample:coffee --method gradcam``,
  timed from outside (wall clock, process start to exit);
- the same work in phases, timed inside one child: importing torch, importing convscope and
  filling the method registry, loading the model, loading the photo, the method itself
  (``convscope.explain``), drawing the overlay PNG, and writing it; and which of matplotlib,
  scikit-image, scipy, imageio and scikit-learn got imported along the way.

The table gives medians over rounds.

    python benchmarks/bench_startup.py [--before REF] [--rounds 7] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("matplotlib", "skimage", "scipy", "imageio", "sklearn")
PHASES = (
    "import torch",
    "import convscope + registry",
    "load model (efficientnet_lite0)",
    "load photo (sample:coffee)",
    "method (gradcam)",
    "draw overlay PNG",
    "write file",
)

CHILD = r"""
import json, sys, tempfile, time
t = time.perf_counter()
times = []
def lap():
    global t
    now = time.perf_counter(); times.append(now - t); t = now
import torch; lap()
import convscope; from convscope.core.registry import methods; methods(); lap()
bundle = convscope.load_model("efficientnet_lite0"); lap()
from convscope.data.images import load_images
images = load_images(["sample:coffee"]); lap()
result = convscope.explain(bundle, images, "gradcam"); lap()
files = result.files(); lap()
from convscope.fileio import write_all
write_all(tempfile.mkdtemp(), files); lap()
print(json.dumps({"times": times, "heavy": [m for m in HEAVY if m in sys.modules]}))
""".replace("HEAVY", repr(HEAVY))


def child_env(src: Path, threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(src) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = str(threads)
    return env


def command_time(src: Path, out: str, threads: int) -> float:
    args = [sys.executable, "-m", "convscope.cli.main", "explain", "sample:coffee"]
    args += ["--method", "gradcam", "--out", out]
    t = time.perf_counter()
    subprocess.run(args, env=child_env(src, threads), check=True, capture_output=True)
    return time.perf_counter() - t


def phase_times(src: Path, threads: int) -> tuple[list[float], list[str]]:
    import json

    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        env=child_env(src, threads),
        check=True,
        capture_output=True,
        text=True,
    )
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return data["times"], data["heavy"]


def extract(ref: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "src"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", default="eb8fa52", help="git revision of the 'before' sources")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        trees = {
            f"before ({args.before})": extract(args.before, Path(tmp)),
            "after": ROOT / "src",
        }
        names = list(trees)
        wall: dict[str, list[float]] = {n: [] for n in names}
        phases: dict[str, list[list[float]]] = {n: [] for n in names}
        heavy: dict[str, list[str]] = {}
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                wall[name].append(command_time(trees[name], os.path.join(tmp, "out"), args.threads))
                times, imported = phase_times(trees[name], args.threads)
                phases[name].append(times)
                heavy[name] = imported
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    med = {n: [statistics.median(col) for col in zip(*phases[n])] for n in names}
    rows = [("`convscope explain sample:coffee --method gradcam` (whole command)", wall)]
    header = ["", *names, "after / before"]
    table = [header, ["---"] * len(header)]
    for label, values in rows:
        b, a = (statistics.median(values[n]) for n in names)
        table.append([label, f"{b:.2f} s", f"{a:.2f} s", f"{a / b:.2f}"])
    for i, phase in enumerate(PHASES):
        b, a = med[names[0]][i], med[names[1]][i]
        table.append([phase, f"{b:.3f} s", f"{a:.3f} s", f"{a / b:.2f}" if b > 0 else "-"])
    b, a = sum(med[names[0]]), sum(med[names[1]])
    table.append(["sum of the phases", f"{b:.2f} s", f"{a:.2f} s", f"{a / b:.2f}"])
    table.append(
        ["imported besides torch", *[", ".join(heavy[n]) or "none of them" for n in names], ""]
    )
    if args.markdown:
        for row in table:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        for row in table:
            if row[0] != "---":
                print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    print(
        f"\n{args.rounds} rounds, medians; {args.threads} threads; python {sys.version.split()[0]}"
    )


if __name__ == "__main__":
    main()
