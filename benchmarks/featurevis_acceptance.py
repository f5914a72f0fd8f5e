"""What feature visualization achieves on EfficientNet-Lite0: the acceptance measurements of
issue 11, each a part of this script, with a figure for the README.

  (a) classes   preset lucid, 8 classes in one batch: softmax of the class on the final image,
                and under random 8-pixel jitters of it (16 draws; grey where it is uncovered)
  (b) fooling   preset fooling from zeros: the first step at which the softmax reaches 99 %,
                and the probability after 200 steps
  (c) channels  preset lucid, 32 channels of a layer in one batch, at three depths: the channel's
                mean activation on its visualization / its highest mean activation over the colour
                sample photos and their crops (the whole photo, four corner quarters, the centre
                half, each resized to 224)
  (d) yosinski  preset yosinski, 4 images per class: pairwise mean absolute pixel difference
                (target >= 4 / 255), the share of pixels at the mean colour (clipped), the
                high-frequency share of each image's deviation (its Laplacian's energy / its energy)

Run one part per process (CPU time is scarce): ``python benchmarks/featurevis_acceptance.py a
--steps 256``; each writes ``<out>/featurevis_<part>.json`` and ``<out>/featurevis_<part>.png``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import convscope
from convscope.featurevis import custom
from convscope.featurevis.transforms import Transforms

CLASSES = [
    "flamingo",
    "goldfish",
    "monarch",
    "school bus",
    "espresso",
    "lemon",
    "daisy",
    "volcano",
]
LAYERS = ["_blocks.4", "_blocks.9", "_blocks.13"]
PHOTOS = [
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "china",
    "flower",
    "colorwheel",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
]


def _grid_with_labels(images, labels, columns, size=160):
    from PIL import Image, ImageDraw

    tiles = []
    for im, text in zip(images, labels):
        im = im.resize((size, size), Image.BILINEAR)
        tile = Image.new("RGB", (size, size + 16), "white")
        tile.paste(im, (0, 0))
        ImageDraw.Draw(tile).text((3, size + 2), text, fill=(20, 20, 20))
        tiles.append(tile)
    from convscope.viz.featurevis import image_grid

    return image_grid(tiles, columns, gap=4)


def part_a(bundle, steps, out):
    t = time.perf_counter()
    r = convscope.visualize(bundle, [f"class:{c}" for c in CLASSES], steps=steps, preset="lucid")
    seconds = time.perf_counter() - t
    idx = [convscope.featurevis.objectives.ClassScore(c).index(_env(bundle)) for c in CLASSES]
    probs = r.probabilities()[torch.arange(len(CLASSES)), idx]
    jit = Transforms(jitter=17)  # integer shifts -8..8 per axis
    gen = torch.Generator().manual_seed(0)
    jittered = []
    with torch.no_grad():
        for _ in range(16):
            draws = torch.stack([jit.draw(1, gen)[0] for _ in range(len(CLASSES))])
            x = r.images * 1.0
            moved = jit.apply(x, draws)
            from convscope.featurevis.render import pixel_space

            logits = bundle.model(pixel_space(bundle).to_input(moved))
            jittered.append(logits.softmax(1)[torch.arange(len(CLASSES)), idx])
    jittered = torch.stack(jittered)  # (16, 8)
    rows = [
        {
            "class": c,
            "prob": round(float(probs[i]), 4),
            "jitter_min": round(float(jittered[:, i].min()), 4),
            "jitter_mean": round(float(jittered[:, i].mean()), 4),
        }
        for i, c in enumerate(CLASSES)
    ]
    fig = _grid_with_labels(
        [r.image(i) for i in range(len(r))],
        [f"{c} {float(probs[i]):.0%}" for i, c in enumerate(CLASSES)],
        columns=4,
    )
    ok = all(x["prob"] >= 0.9 and x["jitter_min"] >= 0.5 for x in rows)
    return {"steps": steps, "seconds": round(seconds, 1), "rows": rows, "met": ok}, fig


def _env(bundle):
    from convscope.featurevis.render import dry_run, pixel_space

    return dry_run(bundle, [], (224, 224), pixel_space(bundle))


def part_b(bundle, steps, out):
    classes = CLASSES[:4]
    idx = [convscope.featurevis.objectives.ClassScore(c).index(_env(bundle)) for c in classes]
    seen = []

    def logit_and_watch(k):
        def f(p):
            seen.append((k, p.output.detach().softmax(1)[:, idx[k]].clone()))
            return p.output[:, idx[k]]

        return custom(f, name=f"class:{classes[k]}")

    t = time.perf_counter()
    r = convscope.visualize(
        bundle, [logit_and_watch(k) for k in range(len(classes))], steps=steps, preset="fooling"
    )
    seconds = time.perf_counter() - t
    per = {k: [float(v) for kk, v in seen if kk == k] for k in range(len(classes))}
    rows = []
    for k, c in enumerate(classes):
        trace = per[k][:steps]  # the value before each step; the last entry: the final image
        first = next((i for i, v in enumerate(trace + per[k][steps:]) if v >= 0.99), None)
        rows.append(
            {
                "class": c,
                "first_step_99": first,
                "prob_final": round(per[k][-1], 4),
                "top1": r.top_predictions(1)[k][0][1],
            }
        )
    fig = _grid_with_labels(
        [r.image(i) for i in range(len(r))],
        [f"{c} {row['prob_final']:.1%}" for c, row in zip(classes, rows)],
        columns=4,
    )
    ok = all(x["first_step_99"] is not None and x["first_step_99"] <= 200 for x in rows)
    return {"steps": steps, "seconds": round(seconds, 1), "rows": rows, "met": ok}, fig


def _photo_batch(bundle):
    from PIL import Image

    from convscope.data.images import load_images

    pils = load_images([f"sample:{p}" for p in PHOTOS if p in convscope.samples()])
    views = []
    for im in pils:
        w, h = im.size
        views.append(im)
        views += [
            im.crop((0, 0, w // 2, h // 2)),
            im.crop((w // 2, 0, w, h // 2)),
            im.crop((0, h // 2, w // 2, h)),
            im.crop((w // 2, h // 2, w, h)),
            im.crop((w // 4, h // 4, 3 * w // 4, 3 * h // 4)),
        ]
    views = [v.resize((224, 224), Image.BILINEAR) for v in views]
    x, _ = bundle.prepare(views)
    return x


def part_c(bundle, steps, out, layers=None, channels=32, size=224):
    layers = layers or LAYERS
    x = _photo_batch(bundle)
    results, figs = [], []
    for layer in layers:
        with torch.no_grad(), convscope.Recorder(bundle.model, [layer]) as rec:
            for s in range(0, x.shape[0], 16):
                bundle.model(x[s : s + 16])
            acts = torch.cat([a for a in rec.calls[layer] if isinstance(a, torch.Tensor)])
        photo_max = acts[:, :channels].mean(dim=(2, 3)).amax(dim=0)  # (channels,)
        t = time.perf_counter()
        r = convscope.visualize(
            bundle,
            [f"channel:{layer}:{k}" for k in range(channels)],
            steps=steps,
            size=size,
            preset="lucid",
        )
        seconds = time.perf_counter() - t
        ratio = r.values / photo_max.clamp_min(1e-6)
        share = float((ratio >= 1.5).float().mean())
        results.append(
            {
                "layer": layer,
                "seconds": round(seconds, 1),
                "share_ge_1.5x": round(share, 4),
                "median_ratio": round(float(ratio.median()), 2),
                "min_ratio": round(float(ratio.min()), 2),
                "photo_views": int(x.shape[0]),
                "met": share >= 0.9,
            }
        )
        figs.append(
            _grid_with_labels(
                [r.image(i) for i in range(8)],
                [f"{layer}:{k} {float(ratio[k]):.1f}x" for k in range(8)],
                columns=8,
                size=112,
            )
        )
        print(results[-1], flush=True)
    from convscope.viz.featurevis import image_grid

    fig = image_grid(figs, 1, gap=6)
    return {"steps": steps, "layers": results, "met": all(x["met"] for x in results)}, fig


def part_d(bundle, steps, out):
    classes = ["flamingo", "school bus"]
    t = time.perf_counter()
    r = convscope.visualize(bundle, [f"class:{c}" for c in classes], steps=steps, preset="yosinski")
    seconds = time.perf_counter() - t
    from convscope.featurevis.render import pixel_space

    center = pixel_space(bundle).center.view(1, 3, 1, 1)
    dev = r.images - center
    # exact zeros: pixels at the mean colour (clipped); high-frequency share: the energy of the
    # deviation's discrete Laplacian over the deviation's energy (lower = smoother)
    zeros = (dev.abs().sum(1) == 0).flatten(1).float().mean(1)
    lap = (
        4 * dev[:, :, 1:-1, 1:-1]
        - dev[:, :, :-2, 1:-1]
        - dev[:, :, 2:, 1:-1]
        - dev[:, :, 1:-1, :-2]
        - dev[:, :, 1:-1, 2:]
    )
    hf = lap.square().flatten(1).sum(1) / dev.square().flatten(1).sum(1).clamp_min(1e-12)
    rows = []
    probs = r.top_predictions(1)
    for g, c in enumerate(classes):
        imgs = r.images[4 * g : 4 * g + 4] * 255
        diffs = [
            round(float((imgs[i] - imgs[j]).abs().mean()), 1)
            for i in range(4)
            for j in range(i + 1, 4)
        ]
        rows.append(
            {
                "class": c,
                "pairwise_mean_abs_diff_0_255": diffs,
                "mean_abs_deviation_0_255": [
                    round(float(dev[4 * g + k].abs().mean() * 255), 1) for k in range(4)
                ],
                "share_of_pixels_at_mean": [round(float(zeros[4 * g + k]), 3) for k in range(4)],
                "high_frequency_share": [round(float(hf[4 * g + k]), 2) for k in range(4)],
                "top1": [
                    f"{probs[4 * g + k][0][1]} {probs[4 * g + k][0][2]:.0%}" for k in range(4)
                ],
                "logit": [round(float(v), 2) for v in r.values[4 * g : 4 * g + 4]],
            }
        )
    fig = _grid_with_labels(
        [r.image(i) for i in range(len(r))],
        [f"{r.objectives[i][6:]} #{r.copy[i] + 1}" for i in range(len(r))],
        columns=4,
    )
    ok = all(min(x["pairwise_mean_abs_diff_0_255"]) >= 4 for x in rows)
    return {"steps": steps, "seconds": round(seconds, 1), "rows": rows, "met": ok}, fig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("part", choices=["a", "b", "c", "d"])
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--layers", default=None, help="(c) comma-separated layers")
    p.add_argument("--channels", type=int, default=32, help="(c) channels per layer")
    p.add_argument("--size", type=int, default=224, help="(c) image size")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    bundle = convscope.load_model("efficientnet_lite0")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = args.steps or {"a": 256, "b": 200, "c": 256, "d": 300}[args.part]
    t = time.perf_counter()
    if args.part == "c":
        layers = args.layers.split(",") if args.layers else None
        result, fig = part_c(bundle, steps, out, layers, args.channels, args.size)
        result["size"] = args.size
    else:
        result, fig = {"a": part_a, "b": part_b, "d": part_d}[args.part](bundle, steps, out)
    result["total_seconds"] = round(time.perf_counter() - t, 1)
    result["env"] = (
        f"convscope {convscope.__version__}, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}, {args.threads} threads, "
        f"{time.strftime('%Y-%m-%d %H:%M')}"
    )
    (out / f"featurevis_{args.part}.json").write_text(json.dumps(result, indent=1))
    fig.save(out / f"featurevis_{args.part}.png")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
