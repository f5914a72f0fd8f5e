"""Measure the shipped shapes-world models and write the numbers the README and the demo show.

    python scripts/shapes_report.py --multitask RUNS_DIR [--n 48] [--n-single 200] [--markdown]

Reads the shipped bundles (shapes-cnn, softmax-regression, mlp) and the logs of the three
multi-task runs (``RUNS_DIR/multitask-<strategy>/multitask-<strategy>.json``, made by
``convscope train multitask --strategy S --out RUNS_DIR/multitask-S``), then writes
``src/convscope/models/shapes_weights/report.json``: held-out accuracies, the first-layer filter
statistic, the template correlations, the multi-task comparison (curves, loss noise, gates) and
the attribution-vs-truth tables (every method on shapes-cnn, 200 single-shape and 48 multi-shape
images; about 5 minutes on one busy CPU core).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from convscope.data.shapes import GRAY28, generate
from convscope.metrics.filters import filter_structure
from convscope.metrics.truth import attribution_vs_truth
from convscope.models import load_model
from convscope.models.shapes import shipped_log
from convscope.train.analysis import template_correlations
from convscope.train.multitask_report import multitask_summary, trim_log
from convscope.train.trainer import HELD_OUT, STRATEGIES

OUT = Path(__file__).resolve().parents[1] / "src/convscope/models/shapes_weights/report.json"


def accuracy(name: str, n: int = 2000, **data) -> float:
    bundle = load_model(name)
    batch = generate(n, HELD_OUT, **data)
    with torch.no_grad():
        pred = bundle.model(batch.images).argmax(1)
    return float((pred == batch.labels["shape"]).float().mean())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--multitask", help="folder with the multitask-<strategy> runs (else kept)")
    p.add_argument("--n", type=int, default=48, help="multi-shape images for the attribution table")
    p.add_argument("--n-single", type=int, default=200, help="single-shape images for the table")
    p.add_argument("--markdown", action="store_true", help="print the README tables")
    p.add_argument("--skip-attribution", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)

    report: dict = json.loads(OUT.read_text()) if OUT.exists() else {}
    report["accuracy"] = {
        "shapes-cnn (1 shape)": accuracy("shapes-cnn", size=64, count=1),
        "shapes-cnn (2-3 shapes, the largest)": accuracy("shapes-cnn", size=64, count=(2, 3)),
        "softmax-regression": accuracy("softmax-regression", **GRAY28),
        "mlp": accuracy("mlp", **GRAY28),
    }
    trained = filter_structure(load_model("shapes-cnn").model.conv1.weight)
    report["filters"] = {
        "init": shipped_log("shapes-cnn")["filters_init"],
        "trained": {
            "oriented_fraction": trained.oriented_fraction,
            "mean_low_frequency": trained.mean_low_frequency,
        },
    }
    report["correlations"] = {m: template_correlations(m) for m in ("softmax-regression", "mlp")}
    if args.multitask:
        logs = {}
        for s in STRATEGIES:
            path = Path(args.multitask) / f"multitask-{s}" / f"multitask-{s}.json"
            logs[s] = json.loads(path.read_text())
        report["multitask"] = trim_log(multitask_summary(logs))
        report["multitask_seconds"] = {s: round(log["seconds"], 1) for s, log in logs.items()}
    if not args.skip_attribution:
        single, _ = attribution_vs_truth("shapes-cnn", n=args.n_single, count=1)
        multi, skipped = attribution_vs_truth("shapes-cnn", n=args.n, count=(2, 3))
        report["attribution"] = {
            "n_images": args.n,
            "n_single": args.n_single,
            "tolerance": 4,
            "single": single,
            "multi": multi,
            "skipped": skipped,
        }
    OUT.write_text(json.dumps(trim_log(report), indent=1) + "\n")
    print(OUT)
    if args.markdown:
        a = report.get("attribution")
        if a:
            print(
                "| method | pointing game (1 shape) | relevance mass (1 shape) | "
                "pointing game (2-3 shapes) | relevance mass (2-3 shapes) |"
            )
            print("|---|---|---|---|---|")
            for m in sorted(a["multi"], key=lambda k: -a["multi"][k]["relevance_mass"]):
                s, t = a["single"][m], a["multi"][m]
                print(
                    f"| `{m}` | {s['pointing_game']:.2f} | {s['relevance_mass']:.2f} | "
                    f"{t['pointing_game']:.2f} | {t['relevance_mass']:.2f} |"
                )


if __name__ == "__main__":
    main()
