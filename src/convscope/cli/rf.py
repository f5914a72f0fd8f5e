"""``convscope rf``: a layer's receptive field, a unit's box, and (with images) its effective
receptive field."""

from __future__ import annotations

import argparse


def _pair(text: str | None, what: str) -> tuple[int, int] | None:
    from convscope.errors import ConvscopeError

    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ConvscopeError(f"{what} is two integers I,J >= 0 (or one for both), not {text!r}")
    return int(parts[0]), int(parts[1])


def run(args: argparse.Namespace) -> int:
    import convscope
    from convscope.errors import ConvscopeError
    from convscope.fileio import write_all
    from convscope.viz.render import png_bytes

    unit = _pair(args.unit, "--unit")
    size = _pair(args.input_size, "--input-size")
    if size is not None and min(size) < 1:
        raise ConvscopeError("--input-size must be positive")
    if args.erf and not args.images:
        raise ConvscopeError("--erf needs images to average over")
    bundle = convscope.load_model(args.model)
    if size is None and args.images:
        pre = bundle.preprocess
        size = (pre.crop, pre.crop) if hasattr(pre, "crop") else None
    rf = convscope.receptive_field(bundle, args.layer, size)
    print(rf.describe())
    h, w = rf.map_size
    i, j = unit if unit is not None else (h // 2, w // 2)
    t, left, b, r = rf.box(i, j)
    which = "unit" if unit is not None else "centre unit"
    print(
        f"{which} ({i}, {j}): rows {t}-{b - 1}, columns {left}-{r - 1} (box {t}, {left}, {b}, {r})"
    )
    if args.out is None:
        return 0
    files: dict[str, bytes] = {}
    from convscope.viz.receptive_field import draw_boxes

    if args.images:
        from convscope.api import prepare_inputs

        _, pixels, labels = prepare_inputs(bundle, args.images[:1])
        if pixels is None:
            raise ConvscopeError("this model's inputs cannot be drawn as an image")
        canvas = pixels[0].cpu()
    else:
        import torch

        canvas = torch.full((*rf.input_size, 3), 200, dtype=torch.uint8)
    picture = draw_boxes(canvas, [(t, left, b, r)], [f"{args.layer} ({i}, {j})"])
    files["rf.png"] = png_bytes(picture)
    if args.erf:
        erf = convscope.effective_receptive_field(bundle, args.images, args.layer, position=(i, j))
        files["erf.png"] = png_bytes(erf.image())
        print(
            f"effective receptive field of {which} ({i}, {j}) over {erf.images} image(s): "
            f"{100 * erf.inside_box():.1f}% inside the box, 90% within {erf.radius(0.9):.1f} px"
        )
    for path in write_all(args.out, files):
        print(f"wrote {path}")
    return 0
