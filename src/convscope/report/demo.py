"""The demo page: for each sample photo, the top-5 predictions and what the network looked at;
every method side by side; and the sanity check of Adebayo et al. 2018 on one photo.

The page must build in under a minute on 2 CPU cores, so the multi-pass methods run with cheaper
options than their defaults (:data:`DEMO_OPTIONS`) and, where the bundle names one
(``meta["cheaper_layers"]``), at a cheaper layer; the page states each choice, the time each
method took, and the methods that were skipped and why. The page only lays out results: the
methods run in one :func:`convscope.compare`, the sanity check's checkpoints come from
:func:`convscope.metrics.sanity.checkpoint_layers`.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping, Sequence
from typing import Any

from convscope.report.page import Card, Figure, Page, Section, bars, table

__all__ = ["DEMO_OPTIONS", "DEMO_SAMPLES", "build_demo"]

DEMO_SAMPLES = ("coffee", "chelsea", "astronaut", "rocket", "china", "flower")

# Cheaper options for the multi-pass methods, and what they change (the page shows both). The
# rows per pass are the device's default (convscope.core.perturbed_batches.default_rows).
DEMO_OPTIONS: dict[str, dict[str, Any]] = {
    "smoothgrad": {"n_samples": 10, "seed": 0},
    "integrated_gradients": {"steps": 16},
    "occlusion": {"window": 56, "stride": 28},
}
DEMO_NOTES = {
    "smoothgrad": "averages 10 noisy copies instead of 25 (one forward and backward pass each)",
    "integrated_gradients": "takes 16 Gauss-Legendre steps instead of 50 (one forward and "
    "backward pass each)",
    "occlusion": "slides a 56-pixel window every 28 pixels (49 forward passes per photo) instead "
    "of a 16-pixel one every 8 (729 passes, about 12 s per photo on 2 CPU cores)",
}
# Methods left out for a model that has no cheaper layer for them (the bundle's
# meta["cheaper_layers"], or build_demo's `layers`).
TOO_SLOW = {
    "scorecam": "one forward pass per channel of the CAM layer per photo: too slow for the demo "
    "(a cheaper layer can be given in the bundle's meta['cheaper_layers'])",
}
SANITY_METHODS = ("gradcam", "guided_backprop", "saliency")
# The comparison's order: the input-space methods, then the CAM family (others after, by name).
METHOD_ORDER = (
    "saliency",
    "guided_backprop",
    "deconvnet",
    "guided_gradcam",
    "smoothgrad",
    "integrated_gradients",
    "occlusion",
    "cam",
    "gradcam",
    "hirescam",
    "xgradcam",
    "gradcam++",
    "layercam",
    "scorecam",
    "ablationcam",
    "eigencam",
)
PER_ROW = 5  # methods per row of a comparison figure (each row starts with the photo)


def build_demo(
    model: Any = "efficientnet_lite0",
    samples: Sequence[str] | None = None,
    *,
    methods: Sequence[str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    layers: Mapping[str, str | tuple[str, str]] | None = None,
    layer: str = "auto",
    sanity_sample: str | None = "chelsea",
    sanity_methods: Sequence[str] = SANITY_METHODS,
    sanity_checkpoints: int | Sequence[str] = 6,
    inside: bool = True,
    corpus: str | None = "samples-crops:96",
    featurevis: Mapping[str, Any] | bool = True,
    shapes: bool = True,
    receptive_fields: bool = True,
    site: bool = True,
    progress: bool = True,
) -> Page:
    """A :class:`Page` with these sections (and the optional ones named below).

    1. One card per photo: the image the model saw, Grad-CAM and saliency overlays for the top-1
       class, and the top-5 predictions.
    2. Every method side by side per photo (:func:`convscope.compare`), with a table of the options
       and layer each method ran with, its time, and the methods skipped with the reason.
    3. The cascading model-parameter randomization (Adebayo et al. 2018) on ``sanity_sample``:
       the maps of ``sanity_methods`` as the layers are re-initialized from the top down, with the
       Spearman rank correlation to the original map under each.

    Args:
        model: a model name or bundle (:func:`convscope.load_model`).
        samples: sample photo names (default :data:`DEMO_SAMPLES`).
        methods: the methods compared (default: every registered method).
        options: options per method (default :data:`DEMO_OPTIONS`, cheaper than the methods' own).
        layers: a layer per method, for methods that must not run at ``layer``, as (layer, why)
            or a layer name (default: the bundle's ``meta["cheaper_layers"]``); a method of
            :data:`TOO_SLOW` without one is left out, with the reason on the page.
        layer: the CAM layer of the comparison (default the model's).
        sanity_sample: the photo of the sanity check; None (or a photo not shown) leaves it out.
        sanity_methods: the methods checked.
        sanity_checkpoints: the stages of the top-down cascade at which maps are shown: a number
            ``k`` (:func:`~convscope.metrics.sanity.checkpoint_layers`: ``k`` convolutional or
            linear layers evenly spread from the top layer down to the first) or layer names.
        inside: add the "Inside the network" section (first-layer filters, the pipeline strip
            of the first photo, per-layer statistics, and the receptive fields if
            ``receptive_fields``; :mod:`convscope.report.inside_section`).
        corpus: the corpus of the "What the dataset says" section
            (:mod:`convscope.report.corpus_section`); None leaves the section out.
        featurevis: the "What excites the network" section (feature visualizations of the
            photos' top classes, Yosinski's four priors, a fooling image, a channel grid): True for
            :data:`~convscope.report.featurevis_section.DEMO_FEATUREVIS`, a dict to override its
            settings, False to leave it out.
        shapes: add the "Shapes world" section (the models convscope trained, from their shipped
            weights and measurements; :mod:`convscope.report.shapes_section`).
        receptive_fields: the receptive-field card of the "Inside the network" section (the
            centre unit's exact box at three depths on the first photo, and each unit's
            effective receptive field; :mod:`convscope.report.rf_section`).
        site: with ``corpus``, a small microscope site under ``site/`` built from the dataset
            section's pass (:mod:`convscope.report.site_section`) and a link to it.
        progress: show progress bars.
    """
    import torch

    import convscope
    from convscope.api import prepare_inputs
    from convscope.data.samples import samples as available
    from convscope.result import Comparison

    start = time.perf_counter()
    bundle = convscope.load_model(model)
    names = [s for s in (samples or DEMO_SAMPLES) if s in available()]
    try:
        import sklearn  # noqa: F401
    except ImportError:
        names = [s for s in names if s not in ("china", "flower")]
    images = [f"sample:{s}" for s in names]
    x, pixels, _ = prepare_inputs(bundle, images)

    # -- every method, in one comparison (its time per method, its reasons to skip) ---------------
    registered = convscope.methods()
    wanted = (
        [convscope.method_info(m).name for m in methods]  # an unknown name fails before any work
        if methods is not None
        else [m for m in METHOD_ORDER if m in registered]
        + [m for m in registered if m not in METHOD_ORDER]
    )
    checked = [convscope.method_info(m).name for m in sanity_methods]
    opts = {k: dict(v) for k, v in (DEMO_OPTIONS if options is None else options).items()}
    given = bundle.meta.get("cheaper_layers", {}) if layers is None else layers
    model_layers = {m: v if isinstance(v, tuple) else (v, "") for m, v in given.items()}
    excluded = {m: TOO_SLOW[m] for m in wanted if m in TOO_SLOW and m not in model_layers}
    run = [m for m in wanted if m not in excluded]
    comparison = (
        convscope.compare(
            bundle,
            x,
            run,
            layer=layer,
            options={m: o for m, o in opts.items() if m in run and o} or None,
            layers={m: where for m, (where, _) in model_layers.items() if m in run} or None,
            progress=progress,
        )
        if run
        else Comparison()
    )
    results, skipped, seconds = comparison.explanations, comparison.skipped, comparison.seconds
    for r in results.values():
        r.pixels, r.labels = pixels, names

    phases = {"methods": sum(seconds.values())}
    mark = time.perf_counter()
    first = {}
    for name in ("gradcam", "saliency"):
        if name not in results:
            first[name] = convscope.explain(bundle, x, name)
            first[name].pixels, first[name].labels = pixels, names
        else:
            first[name] = results[name]

    page = Page(
        title="convscope demo",
        subtitle=f"What {bundle.name} looks at when it names a photo",
    )
    page.sections.append(_predictions(page, names, first["gradcam"], first["saliency"]))
    if results or skipped or excluded:
        page.sections.append(
            _comparison(page, names, results, skipped, excluded, seconds, opts, model_layers)
        )
    phases["figures"] = time.perf_counter() - mark
    mark = time.perf_counter()
    if sanity_sample in names and checked:
        page.sections.append(
            _sanity(
                page,
                bundle,
                x[names.index(sanity_sample)][None],
                sanity_sample,
                checked,
                sanity_checkpoints,
                progress,
            )
        )
        phases["sanity check"] = time.perf_counter() - mark
    if inside:
        from convscope.report.inside_section import inside_section

        mark = time.perf_counter()
        rf = receptive_fields and pixels is not None
        page.sections.append(inside_section(page, bundle, x, names, receptive_fields=rf))
        phases["inside"] = time.perf_counter() - mark
    if corpus is not None:
        from convscope.report.corpus_section import corpus_section

        mark = time.perf_counter()
        kept: dict[str, Any] = {}
        page.sections.append(
            corpus_section(page, bundle, corpus=corpus, progress=progress, keep=kept)
        )
        phases["dataset"] = time.perf_counter() - mark
        if site:
            from convscope.report.site_section import site_section

            mark = time.perf_counter()
            page.sections.append(site_section(page, bundle, kept))
            phases["microscope site"] = time.perf_counter() - mark
    if featurevis is not False and first["gradcam"].targets:
        from convscope.report.featurevis_section import featurevis_section

        own = featurevis if isinstance(featurevis, Mapping) else None
        fv, phases["feature visualization"] = featurevis_section(
            page, bundle, first["gradcam"].targets, own, progress
        )
        page.sections.append(fv)
    if shapes:
        from convscope.report.shapes_section import shapes_section

        mark = time.perf_counter()
        page.sections.append(shapes_section(page))
        phases["shapes world"] = time.perf_counter() - mark
    spent = ", ".join(f"{k} {v:.1f} s" for k, v in phases.items())
    page.footer = (
        f"Made by convscope {convscope.__version__} in {time.perf_counter() - start:.1f} s "
        f"({spent}; {torch.get_num_threads()} torch threads). "
        "Grad-CAM: Selvaraju et al. 2017. Saliency: Simonyan et al. 2014. Sanity checks: Adebayo "
        "et al. 2018. Each method's paper is in the comparison's table."
    )
    return page


def _predictions(page: Page, names: list[str], gradcam: Any, saliency: Any) -> Section:
    from convscope.viz.render import png_bytes, to_pil

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
    return section


def _short_paper(paper: str) -> str:
    return paper.split(",")[0].strip()


def _comparison(
    page: Page,
    names: list[str],
    results: dict[str, Any],
    skipped: dict[str, str],
    excluded: dict[str, str],
    seconds: dict[str, float],
    opts: dict[str, dict[str, Any]],
    model_layers: dict[str, tuple[str, str]],
) -> Section:
    import convscope
    from convscope.viz.compare import comparison_figure
    from convscope.viz.render import png_bytes

    cheaper = []
    for m in results:
        own = {k: v for k, v in opts.get(m, {}).items() if k not in ("batch_size", "seed")}
        if own:
            how = ", ".join(f"{k}={v}" for k, v in own.items())
            # the note describes the demo's own options, not options given instead
            same = opts.get(m) == DEMO_OPTIONS.get(m) and m in DEMO_NOTES
            cheaper.append(f"{m} {DEMO_NOTES[m] if same else f'runs with {how}'}")
        if m in model_layers:
            where, why = model_layers[m]
            cheaper.append(f"{m} runs at layer {where}" + (f" ({why})" if why else ""))
    not_run = sorted({*skipped, *excluded})
    intro = (
        f"Every method convscope has ({len(results)} ran here), each explaining the same top-1 "
        "class of the same photo. Each panel has its own colour scale (the colour bar gives the "
        "method's raw values): the methods differ in units. The input-space methods come first, "
        "then the CAM family at the layer named under each panel. "
        + (
            "To keep this page under a minute on a CPU, some methods run with cheaper settings "
            "than their defaults: " + "; ".join(cheaper) + "."
            if cheaper
            else "Every method ran with its defaults."
        )
        + (
            f" Not shown: {', '.join(not_run)} (see the table)."
            if not_run
            else " No method was skipped."
        )
        + " Click a figure to open it at full size."
    )
    rows = []
    for m in [*results, *[m for m in [*skipped, *excluded] if m not in results]]:
        info = convscope.method_info(m)
        if m in results:
            r = results[m]
            given = opts.get(m, {})
            shown = dict(r.meta.get("options", {}))
            defaults = {k: v for k, v in info.options.items() if k in shown}
            opt_text = ", ".join(
                f"{k}={v} (default {defaults[k]})" if k in given and k in defaults else f"{k}={v}"
                for k, v in shown.items()
            )
            status = "shown"
            where = r.layer or "input"
        else:
            opt_text, where = "", model_layers.get(m, ("", ""))[0]
            status = f"skipped: {skipped[m]}" if m in skipped else f"left out: {excluded[m]}"
        took = f"{seconds[m]:.1f}" if m in seconds else ""
        rows.append([m, _short_paper(info.paper), where, opt_text or "defaults", took, status])
    section = Section(
        "Every method side by side",
        intro,
        body_html=table(
            ["method", "paper", "layer", "options", f"time (s, {len(names)} photos)", "status"],
            rows,
            numeric={4},
        ),
    )
    families: dict[str, list[str]] = {}
    for m, r in results.items():
        cam = r.meta.get("family") == "cam"
        label = "CAM family (layer resolution)" if cam else "input space (pixel resolution)"
        families.setdefault(label, []).append(m)
    rows_of = [
        (label, chunk)
        for label, members in sorted(families.items(), key=lambda kv: kv[0].startswith("CAM"))
        for chunk in _chunks(members, PER_ROW)
    ]
    for i, name in enumerate(names if results else []):
        figures = []
        for row, (label, members) in enumerate(rows_of):
            img = comparison_figure({m: results[m] for m in members}, i)
            src = page.add_asset(f"{name}_compare_{row}.png", png_bytes(img))
            # one scale for every row: a full row of PER_ROW methods and the photo fills the card
            width = f"{100 * (len(members) + 1) / (PER_ROW + 1):.1f}%"
            figures.append(Figure(src, label, width=width, link=True))
        first = results[next(iter(results))]
        section.cards.append(
            Card(
                title=f"{name}: {len(results)} methods for '{first.target_names[i]}'",
                figures=figures,
                wide=True,
            )
        )
    return section


def _chunks(items: list[str], most: int) -> list[list[str]]:
    """``items`` in consecutive rows of at most ``most``, as even as can be (7 -> 4 + 3)."""
    rows = -(-len(items) // most)
    size, extra = divmod(len(items), rows)
    out, start = [], 0
    for r in range(rows):
        end = start + size + (r < extra)
        out.append(items[start:end])
        start = end
    return out


def _sanity(
    page: Page,
    bundle: Any,
    x: Any,
    sample: str,
    methods: list[str],
    checkpoints: int | Sequence[str],
    progress: bool,
) -> Section:
    import convscope
    from convscope.core.layer_listing import parametric_layers
    from convscope.core.maps import display_norm, normalize_maps
    from convscope.errors import LayerError, MethodError
    from convscope.metrics import model_randomization
    from convscope.metrics.sanity import checkpoint_layers
    from convscope.viz.render import colorize, overlay, png_bytes, to_pil
    from convscope.viz.sanity import correlation_plot

    order = parametric_layers(bundle.model, x)
    chosen = (
        checkpoint_layers(bundle.model, order, checkpoints)
        if isinstance(checkpoints, int)
        else list(checkpoints)
    )
    total = len(order)
    runs, skipped = {}, {}
    for m in methods:
        try:
            runs[m] = model_randomization(
                bundle, x, m, stages=chosen, with_ssim=False, progress=progress, seed=0
            )
        except (MethodError, LayerError) as e:  # as compare() does: the method cannot apply
            skipped[m] = str(e)
    section = Section(
        "Sanity check: does the map depend on what the model learned?",
        "The cascading model-parameter randomization test of Adebayo et al. 2018 (Sanity Checks "
        "for Saliency Maps, NeurIPS): the layers with parameters are re-initialized one after "
        "another from the top (the classifier) down, cumulatively, and the map is recomputed for "
        f"the same class of the '{sample}' photo. Under each map: the stage (every parametric "
        "layer from the top down to that one is random) and the Spearman rank correlation ρ "
        "with the original map. A method that explains the model gives maps that stop resembling "
        "the original once the model has forgotten what it learned (ρ near 0); a map that stays "
        "similar shows the image, not the model: guided backpropagation is the famous example. "
        f"To keep it quick, the maps are shown at {len(chosen)} checkpoints of the "
        f"cascade, spread over the depth of the network (all {total} parametric layers are "
        "randomized in turn, the maps computed only at the checkpoints); re-initialization "
        "seed 0. Each map is scaled to its own maximum (gradient maps: 99th percentile of |map|).",
        body_html=table(["method", "skipped because"], [[m, why] for m, why in skipped.items()])
        if skipped
        else "",
    )
    if not runs:
        return section
    stage_names = next(iter(runs.values())).stages
    pixels = bundle.pixels_of(x)[0].cpu()
    photo = page.add_asset(f"sanity_{sample}.png", png_bytes(to_pil(pixels)))
    for m, r in runs.items():
        family = convscope.method_info(m).family
        gradient = family == "gradient"
        heat = normalize_maps(r.maps[:, 0], display_norm(family))
        heat = heat.abs() if gradient else heat.clamp_min(0)
        figures = [Figure(photo, f"input\n{sample}", width="118px")]
        for s, stage in enumerate(r.stages):
            if gradient:
                image = to_pil(colorize(heat[s], "inferno"))
            else:
                image = to_pil(overlay(pixels, heat[s]))
            src = page.add_asset(f"sanity_{sample}_{m}_{s}.png", png_bytes(image))
            figures.append(
                Figure(src, f"{stage}\n{_rho(float(r.correlations[s, 0]))}", width="118px")
            )
        rho = [_rho(v)[4:] for v in r.correlations[:, 0].tolist()]
        mid = len(rho) // 2
        summary = (
            f"ρ with the original map: {rho[1]} once {r.stages[1]} is random, "
            f"{rho[mid]} down to {r.stages[mid]}, {rho[-1]} down to {r.stages[-1]}."
            if len(rho) > 2
            else f"ρ with the original map: {rho[-1]} once {r.stages[-1]} is random."
        )
        section.cards.append(
            Card(
                title=f"{m} ({_short_paper(convscope.method_info(m).paper)})",
                figures=figures,
                body_html=f"<p class='note'>{html.escape(summary)}</p>",
                wide=True,
                strip=True,
            )
        )
    plot = page.add_asset(f"sanity_{sample}_rho.png", png_bytes(correlation_plot(runs)))
    rows = [
        [s, stage, *[float(runs[m].correlations[s, 0]) for m in runs]]
        for s, stage in enumerate(stage_names)
    ]
    section.cards.append(
        Card(
            title="Spearman ρ with the original map, by stage",
            figures=[Figure(plot, "ρ as more layers are randomized", width="520px")],
            body_html=table(
                ["stage", "randomized down to", *[f"ρ {m}" for m in runs]],
                rows,
                numeric={0, *range(2, 2 + len(runs))},
            ),
        )
    )
    return section


def _rho(value: float) -> str:
    """``ρ = +0.12``; a constant map has no ranking, so no correlation."""
    return f"ρ = {value:+.2f}" if value == value else "ρ = none (a constant map)"
