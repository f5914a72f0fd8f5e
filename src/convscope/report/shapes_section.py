"""The demo page's "Shapes world" section: the procedural world and the models convscope trained on
it, from the shipped weights and the saved measurements (``shapes_weights/report.json``, made by
``scripts/shapes_report.py``); nothing is trained while the page builds (about 2-5 s).

Cards: samples with their masks; shapes-cnn's 11 x 11 first-layer filters with the structure
statistic against initialization; softmax regression's class templates with their correlation to
the class mean images; the MLP's hidden units with their weights to the outputs (lecture 004);
the multi-task strategies compared; Grad-CAM on multi-shape images and every method's pointing
game and relevance mass against the masks.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from convscope.report.page import Card, Figure, Page, Section, table

__all__ = ["load_report", "shapes_section"]


def load_report() -> dict[str, Any]:
    """The saved measurements of the shipped shapes-world models."""
    path = resources.files("convscope.models").joinpath("shapes_weights/report.json")
    return json.loads(path.read_text())


def shapes_section(page: Page, n_samples: int = 12) -> Section:
    """The section, its images added to ``page``'s assets."""
    import torch

    import convscope
    from convscope.data.shapes import SHAPES, generate
    from convscope.viz.render import png_bytes
    from convscope.viz.shapes import sample_sheet

    report = load_report()
    section = Section(
        "Shapes world: models convscope trained, and attributions against the truth",
        "A procedural world of ten shape classes with a per-pixel truth (convscope.data.shapes), "
        "and four small models trained on it by convscope train in a few minutes on 2 CPU cores. "
        "Everything below comes from the shipped weights and the saved measurements "
        "(scripts/shapes_report.py); nothing is trained while this page builds.",
    )

    # 1. samples with masks
    batch = generate(n_samples, 0)
    captions = [
        f"{SHAPES[int(s)]} x{int(c)}" for s, c in zip(batch.labels["shape"], batch.labels["count"])
    ]
    src = page.add_asset(
        "shapes-samples.png", png_bytes(sample_sheet(batch.images, batch.masks, captions))
    )
    section.cards.append(
        Card(
            "Samples and their class masks (seed 0)",
            [
                Figure(
                    src,
                    "each image above its class mask; caption: its largest shape, count",
                    "100%",
                    True,
                )
            ],
            wide=True,
        )
    )

    # 2. large first-layer filters
    cnn = convscope.load_model("shapes-cnn")
    f = report["filters"]
    grid = _filter_grid(cnn.model.conv1.weight)
    src = page.add_asset("shapes-cnn-filters.png", png_bytes(grid))
    acc = report["accuracy"]
    section.cards.append(
        Card(
            "shapes-cnn: its 16 first-layer filters (11 x 11, RGB)",
            [Figure(src, "conv1 weights, each on its own scale, zero = mid-grey", "100%", True)],
            body_html=(
                "<p class='note'>"
                f"Held-out accuracy {acc['shapes-cnn (1 shape)']:.1%} (one shape), "
                f"{acc['shapes-cnn (2-3 shapes, the largest)']:.1%} (the largest of 2-3). "
                f"Filters with a dominant orientation: {f['trained']['oriented_fraction']:.0%} "
                f"trained vs {f['init']['oriented_fraction']:.0%} at initialization; power at low "
                f"frequencies {f['trained']['mean_low_frequency']:.0%} vs "
                f"{f['init']['mean_low_frequency']:.0%} (convscope.metrics.filters).</p>"
            ),
        )
    )

    # 3. lecture 004: softmax regression templates and the MLP's hidden units
    soft = convscope.weight_templates("softmax-regression", "fc", (1, 28, 28))
    src = page.add_asset("softmax-templates.png", png_bytes(soft.grid(cell=84, cols=5)))
    corr = report["correlations"]["softmax-regression"]
    rows = [[name, corr[name]["raw"], corr[name]["centred"]] for name in SHAPES]
    section.cards.append(
        Card(
            "Softmax regression: one template per class (lecture 004)",
            [Figure(src, "weight rows as 28 x 28 images, one shared scale", "100%", True)],
            body_html=(
                f"<p class='note'>Held-out accuracy {acc['softmax-regression']:.1%}. Correlation of "
                "each template with its class's mean image, and with that mean minus the mean of "
                "all classes (what sets the class apart):</p>"
                + table(["class", "r (mean image)", "r (centred)"], rows, {1, 2})
            ),
        )
    )
    mlp = convscope.weight_templates("mlp", "hidden", (1, 28, 28), hidden_to_output=True)
    assert mlp.output_weights is not None
    strongest = mlp.output_weights.norm(dim=0).argsort(descending=True)[:4].sort().values.tolist()
    src = page.add_asset("mlp-hidden.png", png_bytes(mlp.grid(units=strongest, cols=2)))
    section.cards.append(
        Card(
            "MLP (300 hidden units): the four units the outputs weigh most",
            [
                Figure(
                    src,
                    "each unit's input weights, its weights to the 10 outputs, its bias",
                    "100%",
                    True,
                )
            ],
            body_html=f"<p class='note'>Held-out accuracy {acc['mlp']:.1%}.</p>",
        )
    )

    # 4. multi-task strategies
    from convscope.data.shapes import TASKS
    from convscope.viz.multitask import accuracy_curves, gate_map

    mt = report["multitask"]
    src = page.add_asset("multitask-curves.png", png_bytes(accuracy_curves(mt)))
    figures = [Figure(src, "held-out accuracy per task against the batches seen", "100%", True)]
    if "gated" in mt and "gates" in mt["gated"]:
        src = page.add_asset(
            "multitask-gates.png", png_bytes(gate_map(mt["gated"]["gates"], list(TASKS)))
        )
        figures.append(
            Figure(src, "learned gates (gated): which trunk channels each task keeps", "100%", True)
        )
    tasks = list(TASKS)
    rows = [
        [
            s,
            *[mt[s]["final"][t] for t in tasks],
            mt[s]["mean_final"],
            sum(mt[s]["loss_noise"][t] for t in tasks) / len(tasks),
            sum(mt[s]["heldout_jitter"][t] for t in tasks) / len(tasks),
        ]
        for s in mt
    ]
    section.cards.append(
        Card(
            "Multi-task training when each example has one task's label (lecture 000)",
            figures,
            body_html=table(
                ["strategy", *tasks, "mean", "loss noise", "held-out jitter"],
                rows,
                set(range(1, len(tasks) + 4)),
            )
            + "<p class='note'>The same examples for each strategy. accumulate: one batch per task, "
            "summed losses, one update; random: one random task's batch per update; gated: random, "
            "with a learned per-task gate on the trunk's channels. Loss noise: the spread of a "
            "task's batch loss around its running mean (second half); held-out jitter: the mean "
            "change of the held-out loss between evaluations.</p>",
            wide=True,
        )
    )

    # 5. attribution against the truth
    att = report.get("attribution")
    multi = generate(4, 2_000_003, count=(2, 3))
    with torch.no_grad():
        top = cnn.model(multi.images).argmax(1)
    cams = convscope.explain(cnn, multi.images, "gradcam", target=top.tolist())
    cams.labels = [f"{SHAPES[int(c)]}" for c in top]
    figs = []
    for i in range(len(multi)):
        src = page.add_asset(f"shapes-gradcam-{i}.png", png_bytes(cams.overlay(i)))
        figs.append(Figure(src, f"Grad-CAM for '{SHAPES[int(top[i])]}'", "120px"))
    body = ""
    if att:
        names = sorted(att["multi"], key=lambda k: -att["multi"][k]["relevance_mass"])
        rows = [
            [
                m,
                att["single"][m]["pointing_game"],
                att["single"][m]["relevance_mass"],
                att["multi"][m]["pointing_game"],
                att["multi"][m]["relevance_mass"],
            ]
            for m in names
        ]
        body = table(
            [
                "method",
                "pointing game (1 shape)",
                "relevance mass (1 shape)",
                "pointing game (2-3 shapes)",
                "relevance mass (2-3 shapes)",
            ],
            rows,
            {1, 2, 3, 4},
        ) + (
            f"<p class='note'>shapes-cnn, {att.get('n_single', att['n_images'])} held-out "
            f"images of one shape and {att['n_images']} of 2-3 shapes; every "
            "shape class present is explained and scored against its pixels (pointing game "
            f"within {att['tolerance']} pixels; relevance mass: the share of positive map on the "
            "shape).</p>"
        )
    section.cards.append(
        Card("Attribution against the truth", figs, body_html=body, wide=True, strip=True)
    )
    return section


def _filter_grid(weight, cell: int = 44, cols: int = 8):
    """RGB filters, each on its own symmetric scale (zero is mid-grey), upscaled and tiled."""
    from convscope.viz.weights import symmetric_scale, tile, upscale, weight_pixels

    w = weight.detach().cpu().float()
    pixels = weight_pixels(w, symmetric_scale(w, "item"))
    cells = upscale(pixels, max(1, cell // w.shape[-1]))
    return tile(cells, cols, pad=3, captions=[str(i) for i in range(w.shape[0])])
