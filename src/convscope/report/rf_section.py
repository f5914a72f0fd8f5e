"""The demo's receptive-field card (in the "Inside the network" section): one unit's box on a photo
at three depths, and where inside each box the unit actually looks (its effective receptive field
over the demo photos)."""

from __future__ import annotations

from typing import Any

import torch

from convscope.report.page import Card, Figure, Section, table

__all__ = ["RF_LAYERS", "receptive_field_card", "receptive_field_section"]

# Three depths of EfficientNet-Lite0 whose boxes are small, middle-sized and most of the image.
RF_LAYERS = {"efficientnet_lite0": ("_blocks.2", "_blocks.5", "_blocks.8")}


def _layers(bundle: Any) -> tuple[str, ...]:
    if bundle.name in RF_LAYERS:
        return RF_LAYERS[bundle.name]
    import convscope

    rfs = [
        r for r in convscope.receptive_fields(bundle, "all", tuple(bundle_size(bundle))).values()
    ]
    rfs = [r for r in rfs if r.map_size[0] > 1]
    picks = [rfs[len(rfs) // 6], rfs[len(rfs) // 2], rfs[(5 * len(rfs)) // 6]] if rfs else []
    return tuple(r.layer for r in picks)


def bundle_size(bundle: Any) -> tuple[int, int]:
    crop = getattr(bundle.preprocess, "crop", 224)
    return crop, crop


def receptive_field_card(
    page: Any,
    bundle: Any,
    x: torch.Tensor,
    name: str,
    photo: int = 0,
    pixels: torch.Tensor | None = None,
    most: int = 4,
) -> Card:
    """A wide card: photo ``photo`` of ``x`` (drawn from ``pixels``, default the bundle's
    denormalized ``x``) with the centre unit's box at three depths, and each unit's effective
    receptive field averaged over the first ``most`` photos of ``x``, its box outlined (one
    forward and backward pass per depth)."""
    import convscope
    from convscope.viz.receptive_field import BOX_COLOURS, draw_boxes, erf_picture
    from convscope.viz.render import png_bytes

    size = tuple(x.shape[-2:])
    if pixels is None:
        pixels = bundle.pixels_of(x[photo : photo + 1])
        photo = 0
    if pixels is None:
        raise ValueError("the model's inputs cannot be drawn as images: pass pixels")
    layers = _layers(bundle)
    rfs = convscope.receptive_fields(bundle, list(layers), size)
    boxes, labels, rows, figures = [], [], [], []
    for k, layer in enumerate(layers):
        rf = rfs[layer]
        h, w = rf.map_size
        i, j = h // 2, w // 2
        boxes.append(rf.box(i, j))
        labels.append(layer)
        erf = convscope.effective_receptive_field(bundle, x[:most], layer, position=(i, j))
        src = page.add_asset(
            f"rf_erf_{layer}.png",
            png_bytes(erf_picture(erf.map, rf.box(i, j), 220, colour=BOX_COLOURS[k], zoom=True)),
        )
        figures.append(Figure(src, f"{layer}: mean |d unit / d input|, box outlined", "220px"))
        geo = f"{rf.size[0]} x {rf.size[1]}" if rf.regular else "irregular"
        stride = f"{rf.stride[0]}" if rf.regular else "-"
        rows.append(
            [
                layer,
                f"{h} x {w}",
                geo,
                stride,
                f"{100 * erf.inside_box():.0f} %",
                f"{erf.radius(0.9):.0f} px",
            ]
        )
    picture = draw_boxes(pixels[photo].cpu(), boxes, labels, scale=2, width=3)
    src = page.add_asset(f"rf_boxes_{name}.png", png_bytes(picture))
    body = table(
        ["layer", "map", "receptive field", "stride", "|gradient| in the box", "90 % within"],
        rows,
        numeric={3, 4, 5},
    )
    return Card(
        title=f"Receptive fields: the centre unit at three depths ({name})",
        figures=[Figure(src, "each unit's exact box, clipped to the image", "300px"), *figures],
        body_html=body + '<p class="note">The box is every input pixel the unit depends on '
        "(convscope.receptive_field: exact, from the traced graph). The heat maps are the mean "
        "|d unit / d input| over the photos (Luo et al. 2016): the unit mostly looks at the "
        "middle of its box.</p>",
        wide=True,
        strip=True,
    )


def receptive_field_section(page: Any, bundle: Any, x: torch.Tensor, name: str) -> Any:
    """The card in a section of its own, for pages without the "Inside the network" section."""
    section = Section(
        "Receptive fields",
        "Each unit of a feature map sees a box of the input that grows with depth; how strongly "
        "each pixel of that box moves the unit is another matter.",
    )
    section.cards.append(receptive_field_card(page, bundle, x, name))
    return section
