"""Make docs/receptive_fields.png: the centre unit's exact box at three depths of
EfficientNet-Lite0 on the coffee photo, then each unit's effective receptive field (mean
|d unit / d input| over the six demo photos), zoomed on its box.

    python scripts/rf_picture.py [--out docs/receptive_fields.png]
"""

from __future__ import annotations

import argparse

from PIL import Image, ImageDraw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/receptive_fields.png")
    args = ap.parse_args()

    import convscope
    from convscope.api import prepare_inputs
    from convscope.report.demo import DEMO_SAMPLES
    from convscope.report.rf_section import RF_LAYERS
    from convscope.viz.receptive_field import BOX_COLOURS, draw_boxes, erf_picture

    bundle = convscope.load_model("efficientnet_lite0")
    x, pixels, _ = prepare_inputs(bundle, [f"sample:{s}" for s in DEMO_SAMPLES])
    layers = RF_LAYERS["efficientnet_lite0"]
    rfs = convscope.receptive_fields(bundle, list(layers), 224)
    boxes, panels = [], []
    for k, layer in enumerate(layers):
        rf = rfs[layer]
        i, j = rf.map_size[0] // 2, rf.map_size[1] // 2
        boxes.append(rf.box(i, j))
        erf = convscope.effective_receptive_field(bundle, x, layer, position=(i, j))
        pic = erf_picture(erf.map, rf.box(i, j), 300, colour=BOX_COLOURS[k], zoom=True)
        panels.append(
            (pic, f"{layer} ({i}, {j}): box {rf.size[0]} px, 90% within {erf.radius(0.9):.0f} px")
        )
    photo = draw_boxes(pixels[0].cpu(), boxes, list(layers), scale=2, width=3)
    pad, head = 12, 22
    tiles = [(photo, "the centre unit's exact box at three depths")] + panels
    size = 300
    width = photo.width + pad + len(panels) * (size + pad) + pad
    height = max(photo.height, size) + head + pad
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    x0 = pad
    for img, caption in tiles:
        if img is not photo:
            img = img.resize((size, size), Image.NEAREST)
        sheet.paste(img, (x0, head))
        draw.text((x0, 5), caption, fill=(0, 0, 0))
        x0 += img.width + pad
    sheet.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
