"""The demo page's "What the dataset says" section: top-9 patch cards of a few units at three
depths (Zeiler & Fergus 2014), guided backpropagation beside the patches of one unit
(Springenberg et al. 2015), the nearest neighbours of sample photos in the last hidden layer
(lecture 002), and a t-SNE map of the corpus coloured by predicted class (Karpathy's cnnembed).

Everything comes from one streaming pass over a small built-in corpus (:func:`convscope.corpus.
survey.survey`), so the section keeps to its share of the page's one-minute budget; the page says
which corpus it used and how long each part took.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from convscope.corpus.sources import Corpus
from convscope.report.page import Card, Figure, Page, Section

__all__ = ["CORPUS_LAYERS", "DEMO_CORPUS", "corpus_section"]

#: The demo's corpus: the first crops of the seeded built-in set (see convscope.corpus.SampleCrops).
DEMO_CORPUS = "samples-crops:96"
#: Per model: the three depths mined for the cards, and the feature layer (last hidden layer).
CORPUS_LAYERS: dict[str, tuple[tuple[str, str, str], str]] = {
    "efficientnet_lite0": (("_blocks.2", "_blocks.7", "_blocks.13"), "_swish@1"),
}
QUERIES = ("coffee", "chelsea", "astronaut", "rocket")
UNITS_PER_LAYER = 4


def _default_layers(bundle: Any) -> tuple[tuple[str, ...], str]:
    if bundle.name in CORPUS_LAYERS:
        return CORPUS_LAYERS[bundle.name]
    from torch import nn

    convs = [n for n, m in bundle.model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("the dataset section needs a model with convolutions")
    picks = [convs[round(f * (len(convs) - 1))] for f in (0.25, 0.5, 1.0)]
    return tuple(dict.fromkeys(picks)), convs[-1]


def corpus_section(
    page: Page,
    bundle: Any,
    *,
    corpus: str = DEMO_CORPUS,
    layers: Sequence[str] | None = None,
    feature_layer: str | None = None,
    queries: Sequence[str] = QUERIES,
    units: int = UNITS_PER_LAYER,
    k: int = 9,
    batch_size: int = 32,
    progress: bool = False,
    keep: dict[str, Any] | None = None,
) -> Section:
    """The section, with its figures added to ``page`` as assets. ``keep``: a dict that receives
    the survey and the corpus (``"survey"``, ``"corpus"``), for the microscope site's link."""
    import convscope
    from convscope.corpus.cards import activation_maps, layer_cards, unit_card
    from convscope.corpus.embedding import embedding, embedding_map
    from convscope.corpus.neighbours import knn, query_features
    from convscope.corpus.survey import survey
    from convscope.viz.corpus import neighbours_figure
    from convscope.viz.render import png_bytes

    e = html.escape
    c = _MemoPixels(convscope.corpus.open(corpus), bundle)
    default_layers, default_feature = _default_layers(bundle)
    layers = list(layers or default_layers)
    feature_layer = feature_layer or default_feature
    t0 = time.perf_counter()
    s = survey(bundle, c, layers, feature_layer, k=k, batch_size=batch_size, progress=progress)
    timings = {"one pass over the corpus": s.seconds}
    if keep is not None:
        keep.update(survey=s, corpus=c)

    section = Section(
        "What the dataset says",
        f"Everything below comes from one forward pass of {bundle.name} over {c.name}: "
        f"{len(c)} seeded crops, flips and rescales of the sample photos (convscope's built-in "
        "offline corpus, convscope.corpus.open('samples-crops')). A real study would mine "
        "thousands of images (convscope mine FOLDER --layer L); this small corpus keeps the page "
        "fast.",
    )

    # -- top-k patch cards at three depths ------------------------------------------------------
    mark = time.perf_counter()
    for name in layers:
        lt = s.top[name]
        # the units whose best image excites them most (a dead unit makes a dull card)
        strongest = lt.values[:, 0].argsort(descending=True)[:units].tolist()
        if lt.boxes is None:
            continue
        grid = layer_cards(lt, c, bundle, strongest, size=48, per_row=units)
        src = page.add_asset(f"corpus_top9_{_safe(name)}.png", png_bytes(grid))
        chans, h, w = lt.shape
        box = lt.boxes[strongest[0], 0].tolist()
        card = Card(
            f"{name}: top-{lt.k} patches of {len(strongest)} of its {chans} units",
            [
                Figure(
                    src,
                    f"each card: one unit, its {lt.k} best crops, the value of its maximum",
                    width="100%",
                    link=True,
                )
            ],
            body_html=f"<p class='note'>{h} x {w} map; a unit here sees a "
            f"{box[2] - box[0]} x {box[3] - box[1]}-pixel patch (its receptive field, clipped "
            "at the border).</p>",
            wide=True,
        )
        section.cards.append(card)
    deepest = s.top[layers[-1]]
    best = int(deepest.values[:, 0].argmax())
    if deepest.boxes is not None:
        guided = unit_card(deepest, best, c, bundle, size=64, guided=True)
        src = page.add_asset("corpus_guided.png", png_bytes(guided))
        section.cards.append(
            Card(
                f"Unit {deepest.unit(best)}: its patches and what in them excites it",
                [
                    Figure(
                        src,
                        "each patch, then the guided backpropagation of the unit at that "
                        "position cropped to the same box",
                        width="100%",
                        link=True,
                    )
                ],
                body_html="<p class='note'>Springenberg et al. 2015 (lecture 003): the gradient "
                "of one neuron through rectifiers that pass only positive gradients of positive "
                "inputs; grey is zero.</p>",
                wide=True,
            )
        )
    overlays = activation_maps(deepest, best, c, bundle)
    strip = [
        Figure(page.add_asset(f"corpus_map_{i}.png", png_bytes(im)), f"{v:.2f}", width="96px")
        for i, (im, v) in enumerate(zip(overlays, deepest.values[best].tolist()))
    ]
    section.cards.append(
        Card(
            f"Where unit {deepest.unit(best)} fires on its top {deepest.k} crops",
            strip,
            body_html="<p class='note'>the unit's map upsampled onto each crop, one colour scale "
            "for the row (its maximum is red)</p>",
            wide=True,
            strip=True,
        )
    )
    timings["cards"] = time.perf_counter() - mark

    # -- neighbours of sample photos in the last hidden layer -----------------------------------
    mark = time.perf_counter()
    q_names = [f"sample:{q}" for q in queries]
    q, labels, q_pixels = query_features(bundle, q_names, s.feature_layer)
    valid = np.flatnonzero(s.valid)
    rows, scores = knn(s.features[valid], q, 6, "cosine")
    figure = neighbours_figure(
        q_pixels,
        [[c.pixels(int(valid[r]), bundle) for r in row] for row in rows],
        scores.tolist(),
        size=80,
        query_labels=labels,
    )
    src = page.add_asset("corpus_neighbours.png", png_bytes(figure))
    section.cards.append(
        Card(
            f"Nearest crops in {s.feature_layer} (cosine of the pooled features)",
            [Figure(src, "a sample photo, then its 6 nearest crops (exact, faiss)", width="100%")],
            body_html="<p class='note'>The photos themselves are not in the corpus; crops of the "
            "same photo are expected near the top, and other photos that the last hidden layer "
            "finds alike after them.</p>",
        )
    )
    timings["neighbours"] = time.perf_counter() - mark

    # -- t-SNE map coloured by the predicted class ----------------------------------------------
    mark = time.perf_counter()
    emb = embedding(s.features[valid], "tsne", seed=0)
    emb.indices = valid[emb.indices]
    labels_top1 = [int(s.top1[i]) for i in emb.indices]
    canvas = embedding_map(
        emb, c, bundle=bundle, labels=labels_top1, label_names=bundle.class_names, cell=40
    )
    src = page.add_asset("corpus_tsne.png", png_bytes(canvas))
    section.cards.append(
        Card(
            f"t-SNE of {s.feature_layer} features, snapped to a grid",
            [
                Figure(
                    src,
                    "frame colour: the predicted class (legend: the most frequent)",
                    width="560px",
                    link=True,
                )
            ],
            body_html=f"<p class='note'>openTSNE, seed 0, {len(emb.indices)} crops; each crop gets "
            "its own cell by a minimum-cost assignment.</p>",
        )
    )
    timings["t-SNE map"] = time.perf_counter() - mark
    total = time.perf_counter() - t0
    spent = ", ".join(f"{e(k)} {v:.1f} s" for k, v in timings.items())
    section.body_html = f"<p class='note'>This section took {total:.1f} s ({spent}).</p>"
    return section


class _MemoPixels(Corpus):
    """The corpus, with each image as the model sees it decoded once for all figures."""

    def __init__(self, corpus: Corpus, bundle: Any) -> None:
        self.inner, self.kind, self._memo = corpus, corpus.kind, {}
        self._bundle = bundle

    @property
    def name(self) -> str:
        return self.inner.name

    def __len__(self) -> int:
        return len(self.inner)

    def load(self, index: int) -> Any:
        return self.inner.load(index)

    def label(self, index: int) -> str:
        return self.inner.label(index)

    def _identity(self) -> list[Any]:
        return self.inner._identity()

    def pixels(self, index: int, bundle: Any) -> np.ndarray:
        if bundle is not self._bundle:
            return self.inner.pixels(index, bundle)
        if index not in self._memo:
            self._memo[index] = self.inner.pixels(index, bundle)
        return self._memo[index]


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
