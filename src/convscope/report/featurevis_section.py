"""The demo page's "What excites the network" section: feature visualizations of the photos' top
classes (preset lucid), Yosinski et al.'s four images for one class, a fooling image with its
probability, and a grid of one layer's channels.

It must fit in about 12 s of the page's one-minute budget on 2 CPU cores, so it runs few steps on
small images (:data:`DEMO_FEATUREVIS`) and says so on the page; the README's figures use the
presets' own step counts at 224 px.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping, Sequence
from typing import Any

from convscope.report.page import Card, Figure, Page, Section

__all__ = ["DEMO_FEATUREVIS", "featurevis_section"]

DEMO_FEATUREVIS: dict[str, Any] = {
    "size": 128,  # pixels (the model's own is 224)
    "steps": 32,  # lucid: classes and channels, in one batched run
    "yosinski_steps": 32,
    "fooling_steps": 40,
    "layer": "_blocks.4",
    "channels": 8,
    "fooling_class": "school bus",
}

_YOSINSKI_CAPTIONS = (
    "blur 0.5 every 4, clip 50 % by norm",
    "decay 0.3, clip 20 % by norm",
    "decay 1e-4, blur 1.0 every 4",
    "blur 0.5 every 4, clip 90 % by contribution",
)


def featurevis_section(
    page: Page,
    bundle: Any,
    classes: Sequence[int],
    settings: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> tuple[Section, float]:
    """The section, and the seconds it took. ``classes``: the photos' top-1 class indices (in
    order, repeats allowed); the first is also Yosinski's class."""
    import convscope
    from convscope.errors import ConvscopeError

    s = {**DEMO_FEATUREVIS, **(settings or {})}
    start = time.perf_counter()
    size, steps = int(s["size"]), int(s["steps"])
    unique = list(dict.fromkeys(int(c) for c in classes))
    objectives: list[Any] = [f"class:{c}" for c in unique]
    layer, n_ch = s.get("layer"), int(s.get("channels") or 0)
    try:
        if layer and n_ch:
            convscope.resolve_layer(bundle.model, layer)
    except ConvscopeError:
        layer = None  # a model without this layer: no channel grid
    if layer and n_ch:
        objectives += [f"channel:{layer}:{k}" for k in range(n_ch)]
    lucid = (
        convscope.visualize(
            bundle, objectives, steps=steps, size=size, preset="lucid", progress=progress
        )
        if objectives
        else None
    )
    yos = None
    if unique:
        yos = convscope.visualize(
            bundle,
            f"class:{unique[0]}",
            steps=int(s["yosinski_steps"]),
            size=size,
            preset="yosinski",
            progress=progress,
        )
    fool = None
    if s.get("fooling_class") is not None and bundle.class_names:
        fool = convscope.visualize(
            bundle,
            f"class:{s['fooling_class']}",
            steps=int(s["fooling_steps"]),
            size=size,
            preset="fooling",
            progress=progress,
        )
    seconds = time.perf_counter() - start

    section = Section(
        "What excites the network",
        "Feature visualization: images optimized by gradient ascent so that the network gives "
        "them a high class score (the logit, before the softmax) or a high mean activation of one "
        "channel, with the weights unchanged. The class images use Lucid's recipe (Olah et al. "
        "2017: a Fourier parameterization with decorrelated colour, random jitter, scaling and "
        "rotation at every step, Adam); Yosinski et al.'s four images come from the four "
        "settings of their Table 1 (L2 decay, Gaussian blur, clipping pixels of small norm or "
        "contribution); the fooling image uses no regularizer at all. To keep this page under a "
        f"minute on a CPU, every image here is {size} x {size} pixels (the model's input is 224) "
        f"and takes only {steps} steps (lucid), {s['yosinski_steps']} (yosinski) and "
        f"{s['fooling_steps']} (fooling); the README's figures use 256 steps at 224 pixels and "
        f"are sharper. These took {seconds:.1f} s. Under each image: the softmax probability the "
        "model gives the optimized class on the final image.",
    )
    from convscope.viz.render import png_bytes

    if lucid is not None and unique:
        figures = []
        probs = lucid.probabilities()
        for i, c in enumerate(unique):
            src = page.add_asset(f"fv_class_{c}.png", png_bytes(lucid.image(i)))
            figures.append(
                Figure(src, f"{bundle.class_name(c)}\np = {float(probs[i, c]):.0%}", width="150px")
            )
        section.cards.append(
            Card("The photos' top classes (lucid)", figures=figures, wide=True, strip=True)
        )
    if yos is not None:
        c = unique[0]
        probs = yos.probabilities()
        figures = []
        for k in range(len(yos)):
            src = page.add_asset(f"fv_yosinski_{k}.png", png_bytes(yos.image(k)))
            cap = _YOSINSKI_CAPTIONS[k] if k < len(_YOSINSKI_CAPTIONS) else f"setting {k + 1}"
            figures.append(Figure(src, f"{cap}\np = {float(probs[k, c]):.0%}", width="150px"))
        section.cards.append(
            Card(
                f"{bundle.class_name(c)}: Yosinski et al.'s four priors",
                figures=figures,
                wide=True,
                strip=True,
            )
        )
    if fool is not None:
        pred = fool.top_predictions(1)[0][0]
        src = page.add_asset("fv_fooling.png", png_bytes(fool.image(0)))
        name = fool.objectives[0].partition(":")[2]
        section.cards.append(
            Card(
                f"Fooling: {name}",
                figures=[Figure(src, f"top-1: {pred[1]}, p = {pred[2]:.1%}", width="150px")],
                body_html=(
                    "<p class='note'>"
                    + html.escape(
                        f"{s['fooling_steps']} normalized gradient steps from the mean image, no "
                        "regularizer: noise that the model names with high confidence (Nguyen "
                        "et al. 2015)."
                    )
                    + "</p>"
                ),
            )
        )
    if lucid is not None and layer and n_ch:
        figures = []
        base = len(unique)
        for k in range(n_ch):
            src = page.add_asset(f"fv_channel_{k}.png", png_bytes(lucid.image(base + k)))
            figures.append(Figure(src, f"channel {k}", width="110px"))
        section.cards.append(
            Card(
                f"Channels 0-{n_ch - 1} of {layer} (lucid, one batched run with the classes)",
                figures=figures,
                wide=True,
                strip=True,
            )
        )
    return section, seconds
