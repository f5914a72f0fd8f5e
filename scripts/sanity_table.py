"""The "passes the sanity check" column of the README's method table.

Runs the cascading model-parameter randomization of Adebayo et al. 2018
(:func:`convscope.metrics.model_randomization`) for every registered method on EfficientNet-Lite0
and two sample photos, at a few checkpoints of the top-down cascade, and prints the Spearman rank
correlation of the maps with the original ones (mean over the photos) at each checkpoint. A
method passes when its maps stop resembling the original ones as soon as the top layers are
randomized and stay so: rho < 0.5 at every checkpoint from ``_conv_head`` down (the classifier
``_fc`` alone is left out, since a class-agnostic method such as Eigen-CAM cannot depend on it).

    python scripts/sanity_table.py [--images sample:chelsea sample:coffee] [--markdown]

The multi-pass methods run with cheaper options than their defaults (stated in the output).
"""

from __future__ import annotations

import argparse
import time

import convscope
from convscope.metrics import model_randomization

CHECKPOINTS = [
    "_fc",
    "_conv_head",
    "_blocks.12._project_conv",
    "_blocks.6._project_conv",
    "_conv_stem",
]
CHEAP = {
    "occlusion": {"window": 32, "stride": 16},
    "integrated_gradients": {"steps": 16},
    "smoothgrad": {"n_samples": 10, "seed": 0},
}
LAYER = {"scorecam": "_blocks.15"}  # 320 channels instead of the head's 1280


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", nargs="+", default=["sample:chelsea", "sample:coffee"])
    p.add_argument("--methods", default="all")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args()
    bundle = convscope.load_model("efficientnet_lite0")
    names = convscope.methods() if args.methods == "all" else args.methods.split(",")
    rows = []
    for name in names:
        start = time.perf_counter()
        r = model_randomization(
            bundle,
            args.images,
            name,
            layer=LAYER.get(name, "auto"),
            stages=CHECKPOINTS,
            with_ssim=False,
            progress=True,
            **CHEAP.get(name, {}),
        )
        rho = r.correlations.float().nanmean(dim=1).tolist()
        rows.append((name, rho, time.perf_counter() - start))
        print(name, " ".join(f"{v:+.2f}" for v in rho), f"({rows[-1][2]:.0f} s)", flush=True)
    head = ["method", *(f"rho after {c}" for c in CHECKPOINTS), "passes"]
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
    for name, rho, _ in rows:
        cells = [name, *(f"{v:.2f}" for v in rho[1:]), "yes" if max(rho[2:]) < 0.5 else "no"]
        print(("| " + " | ".join(cells) + " |") if args.markdown else "  ".join(cells))
    print(f"options: {CHEAP}; layers: {LAYER} (else the default _swish@1)")


if __name__ == "__main__":
    main()
