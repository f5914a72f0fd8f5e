"""What shapes-cnn's last-layer units answer to, measured on the shapes world's truth.

    python scripts/shapes_units.py [--n 512] [--layer relu3] [--featurevis docs/shapes_channels.png]

Mines the top 9 images of every channel of ``--layer`` over the corpus ``shapes:N``
(:func:`convscope.top_units`), then looks up, for each hit, the shape class that covers most of the
hit's exact receptive-field box in the world's class mask (0 if no shape is in the box). Prints the
share of hits that fall on a shape (against random image positions) and each channel's purity: the
share of its 9 hits on its most common class (against 9 shape pixels drawn at random).

With ``--featurevis PNG``, also a channel visualization of each channel of ``bn3`` (relu3 before
its rectifier: a unit at zero on the start image has no gradient; lucid's defaults, 128 steps,
64 x 64), saved as a grid, and whether shapes-cnn classifies each picture as the class whose
weight on that channel is the largest (chance: 1 in 10).
"""

from __future__ import annotations

import argparse
import collections

import torch

import convscope
import convscope.corpus as corpus
from convscope.data.shapes import SHAPES, generate


def box_class(masks: torch.Tensor, img: int, box: tuple[int, int, int, int]) -> int:
    t, left, b, r = box
    inside = masks[img, t:b, left:r]
    inside = inside[inside > 0]
    return int(inside.mode().values) if inside.numel() else 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=512)
    p.add_argument("--layer", default="relu3")
    p.add_argument("--featurevis", metavar="PNG", help="also visualize bn3's channels, save here")
    args = p.parse_args()
    torch.set_num_threads(1)
    bundle = convscope.load_model("shapes-cnn")
    top = convscope.top_units(bundle, corpus.open(f"shapes:{args.n}"), args.layer, k=9)[args.layer]
    world = generate(args.n, 0)
    rf = convscope.receptive_field(bundle, args.layer, (64, 64))
    h, w = rf.map_size
    purity, on_shape, preferred = [], [], []
    for ch in range(top.values.shape[0]):
        hits = zip(top.image_indices[ch].tolist(), top.positions[ch].tolist())
        labels = [box_class(world.masks, img, rf.box(i, j)) for img, (i, j) in hits]
        on_shape.append(sum(v > 0 for v in labels) / len(labels))
        cls, count = collections.Counter(labels).most_common(1)[0]
        purity.append(count / len(labels))
        preferred.append(SHAPES[cls - 1] if cls else "background")
    g = torch.Generator().manual_seed(0)
    random_on = []
    for _ in range(64 * 9):
        img = int(torch.randint(args.n, (1,), generator=g))
        i, j = int(torch.randint(h, (1,), generator=g)), int(torch.randint(w, (1,), generator=g))
        random_on.append(box_class(world.masks, img, rf.box(i, j)) > 0)
    pixels = world.masks[world.masks > 0]
    chance = [
        collections.Counter(
            pixels[torch.randint(pixels.numel(), (9,), generator=g)].tolist()
        ).most_common(1)[0][1]
        / 9
        for _ in range(2000)
    ]
    pur = torch.tensor(purity)
    print(
        f"{args.layer} of shapes-cnn, top 9 of each of {len(purity)} channels over shapes:{args.n}"
    )
    print(
        f"hits on a shape: {sum(on_shape) / len(on_shape):.0%} "
        f"(random positions: {sum(random_on) / len(random_on):.0%})"
    )
    print(
        f"purity: median {pur.median():.2f}, mean {pur.mean():.2f}, "
        f"{int((pur >= 7 / 9).sum())} channels with >= 7 of 9 on one class "
        f"(9 random shape pixels: median {torch.tensor(chance).median():.2f}, "
        f"{sum(c >= 7 / 9 for c in chance) / len(chance):.1%} with >= 7 of 9)"
    )
    print("preferred classes:", dict(collections.Counter(preferred).most_common()))
    if args.featurevis:
        channels = bundle.model.bn3.num_features
        r = convscope.visualize(
            bundle, [f"channel:bn3:{k}" for k in range(channels)], size=64, steps=128
        )
        with torch.no_grad():
            seen = bundle.model(r.inputs).argmax(1)
        own = bundle.model.fc.weight.argmax(0)
        print(
            f"bn3 channel visualizations classified as the channel's class: "
            f"{int((seen == own).sum())} of {channels} (chance {channels / 10:.1f}); "
            f"as: {dict(collections.Counter(SHAPES[int(c)] for c in seen).most_common())}"
        )
        r.grid().save(args.featurevis)


if __name__ == "__main__":
    main()
