"""The demo page: for each sample photo, the top-5 predictions and what the network looked at."""

from __future__ import annotations

from collections.abc import Sequence

from convscope.report.page import Card, Figure, Page, Section, bars

DEMO_SAMPLES = ("coffee", "chelsea", "astronaut", "rocket", "china", "flower")


def build_demo(model="efficientnet_lite0", samples: Sequence[str] | None = None) -> Page:
    """A :class:`Page` with one card per photo: the image the model saw, Grad-CAM and saliency
    overlays for the top-1 class, and the top-5 predictions."""
    import time

    from tqdm.auto import tqdm

    import convscope
    from convscope.data.samples import samples as available
    from convscope.viz.render import png_bytes, to_pil

    start = time.perf_counter()
    bundle = convscope.load_model(model)
    names = [s for s in (samples or DEMO_SAMPLES) if s in available()]
    try:
        import sklearn  # noqa: F401
    except ImportError:
        names = [s for s in names if s not in ("china", "flower")]
    images = [f"sample:{s}" for s in names]

    steps = tqdm(["gradcam", "saliency"], desc="demo", unit="method")
    results = {m: convscope.explain(bundle, images, method=m) for m in steps}
    gradcam, saliency = results["gradcam"], results["saliency"]

    page = Page(
        title="convscope demo",
        subtitle=f"What {bundle.name} looks at when it names a photo",
    )
    section = Section(
        "Predictions and where they come from",
        "Each card shows the photo as the model sees it (resized and center-cropped), the "
        f"Grad-CAM map at layer {gradcam.layer} and the gradient saliency map for the top-1 class, "
        "and the five most probable classes.",
    )
    preds = gradcam.top_predictions(5)
    for i, name in enumerate(names):
        photo = page.add_asset(f"{name}.png", png_bytes(to_pil(gradcam.pixels[i].cpu())))
        cam = page.add_asset(f"{name}_gradcam.png", png_bytes(gradcam.overlay(i)))
        sal = page.add_asset(f"{name}_saliency.png", png_bytes(saliency.heatmap(i, cmap="inferno")))
        top = preds[i][0]
        section.cards.append(
            Card(
                title=f"{name}: {top[1]} ({top[2]:.0%})",
                figures=[
                    Figure(photo, "input"),
                    Figure(cam, f"Grad-CAM: {gradcam.target_names[i]}"),
                    Figure(sal, f"saliency: {saliency.target_names[i]}"),
                ],
                body_html=bars([(label, p) for _, label, p in preds[i]]),
            )
        )
    page.sections.append(section)
    page.footer = (
        f"Made by convscope {convscope.__version__} in {time.perf_counter() - start:.1f} s. "
        "Grad-CAM: Selvaraju et al. 2017. Saliency: Simonyan et al. 2014."
    )
    return page
