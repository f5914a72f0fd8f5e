"""Pooled feature caches (values, cache hits, float16, skipped rows, resume), exact neighbours
against brute force, and embeddings (PCA against scikit-learn, seeded t-SNE, grid snapping)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import convscope
import convscope.corpus as corpus
from convscope.corpus.embedding import embedding, embedding_map, snap_to_grid
from convscope.corpus.features import features
from convscope.corpus.neighbours import knn, neighbours
from tests.corpus.test_mining import all_inputs, tiny_layers
from tests.models import tiny_bundle


def test_features_are_the_pooled_layer_and_come_from_the_cache(folder, tmp_path):
    bundle = tiny_bundle()
    c = corpus.open(folder)
    f = features(bundle, c, "conv3", cache_dir=tmp_path, batch_size=5)
    ref = tiny_layers(bundle.model, all_inputs(c, bundle))["conv3"].mean(dim=(2, 3))
    assert isinstance(f.array, np.memmap) and f.array.shape == (32, 16)
    torch.testing.assert_close(f.tensor(), ref, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        logits = bundle.model(all_inputs(c, bundle))
    assert f.top1.tolist() == logits.argmax(1).tolist()

    calls = []
    handle = bundle.model.register_forward_hook(lambda *a: calls.append(1))
    again = features(bundle, c, "conv3", cache_dir=tmp_path)
    handle.remove()
    assert calls == [] and again.path == f.path  # a cache hit runs nothing
    fmax = features(bundle, c, "conv3", pool="max", dtype="float16", cache_dir=tmp_path)
    assert fmax.path != f.path and fmax.array.dtype == np.float16
    ref_max = tiny_layers(bundle.model, all_inputs(c, bundle))["conv3"].amax(dim=(2, 3))
    torch.testing.assert_close(fmax.tensor(), ref_max, rtol=2e-3, atol=2e-3)


def test_features_skip_undecodable_rows_and_resume(folder, tmp_path):
    (folder / "z04.png").write_bytes(b"broken")
    bundle = tiny_bundle()
    c = corpus.open(folder)
    bad = c.relpaths.index("z04.png")
    whole = features(bundle, c, "conv1", cache_dir=tmp_path / "a", batch_size=4)
    assert not whole.valid[bad] and np.isnan(whole.array[bad]).all() and whole.valid.sum() == 31
    assert bad not in whole.indices

    calls = []

    def stop(module, inputs):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("interrupted")

    handle = bundle.model.register_forward_pre_hook(stop)
    with pytest.raises(RuntimeError):
        features(bundle, c, "conv1", cache_dir=tmp_path / "b", batch_size=4, checkpoint_every=1)
    handle.remove()
    resumed = features(bundle, c, "conv1", cache_dir=tmp_path / "b", batch_size=4)
    assert resumed.meta["resumed_at_batch"] == 3  # the probe pass, then batches 0-2 checkpointed
    assert np.array_equal(np.asarray(resumed.array), np.asarray(whole.array), equal_nan=True)


def test_features_refuse_a_layer_that_cannot_be_pooled(folder, tmp_path):
    class Seq(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 2, 3)
            self.flat = torch.nn.Flatten(2)

        def forward(self, x):
            return self.flat(self.conv(x)).sum(-1)

    from convscope.core.bundle import ModelBundle, Preprocess

    b = ModelBundle(Seq(), preprocess=Preprocess(resize=16, crop=16))
    with pytest.raises(convscope.LayerError, match="cannot be pooled"):
        features(b, folder, "flat", cache_dir=tmp_path)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_knn_is_exact_against_brute_force(metric):
    g = torch.Generator().manual_seed(0)
    base, q = torch.randn(500, 24, generator=g), torch.randn(7, 24, generator=g)
    rows, scores = knn(base.numpy(), q.numpy(), 10, metric)
    if metric == "cosine":
        sim = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(base, dim=1).T
        ref_scores, ref_rows = sim.double().topk(10, dim=1)
    else:
        dist = torch.cdist(q.double(), base.double())
        ref_scores, ref_rows = dist.topk(10, dim=1, largest=False)
    assert rows.tolist() == ref_rows.tolist()
    np.testing.assert_allclose(scores, ref_scores.numpy(), rtol=1e-4, atol=1e-4)


def test_neighbours_of_corpus_images_start_with_themselves(folder, tmp_path):
    bundle = tiny_bundle()
    c = corpus.open(folder)
    queries = [folder / c.relpaths[i] for i in (3, 20)]
    nb = neighbours(bundle, queries, c, "conv3", k=40, cache_dir=tmp_path)
    assert nb.indices.shape == (2, 32)  # k beyond the corpus: every image
    assert nb.indices[:, 0].tolist() == [3, 20]
    np.testing.assert_allclose(nb.scores[:, 0], 1.0, atol=1e-5)
    f = tiny_layers(bundle.model, all_inputs(c, bundle))["conv3"].mean(dim=(2, 3))
    sim = (
        torch.nn.functional.normalize(f[[3, 20]], dim=1) @ torch.nn.functional.normalize(f, dim=1).T
    )
    assert nb.indices.tolist() == sim.argsort(dim=1, descending=True).tolist()
    nb_l2 = neighbours(bundle, queries, c, "conv3", k=3, metric="l2", cache_dir=tmp_path)
    assert nb_l2.indices[:, 0].tolist() == [3, 20] and nb_l2.scores[0, 0] == pytest.approx(
        0, abs=1e-3
    )
    with pytest.raises(convscope.ImageError):
        neighbours(bundle, [folder / "missing.png"], c, "conv3", cache_dir=tmp_path)
    with pytest.raises(convscope.ConvscopeError, match="unknown metric"):
        neighbours(bundle, queries, c, "conv3", metric="manhattan", cache_dir=tmp_path)


def test_pca_matches_scikit_learn_and_tsne_is_seeded():
    from sklearn.decomposition import PCA

    g = np.random.default_rng(0)
    x = np.concatenate([g.normal(0, 1, (40, 10)), g.normal(6, 1, (40, 10))])
    pca = embedding(x, "pca").xy
    ref = PCA(2).fit_transform(x)
    np.testing.assert_allclose(np.abs(pca), np.abs(ref), rtol=1e-6, atol=1e-8)
    a, b = embedding(x, "tsne", seed=1), embedding(x, "tsne", seed=1)
    assert np.array_equal(a.xy, b.xy) and a.xy.shape == (80, 2)
    # the two clusters stay apart: every point's nearest embedded neighbour is in its cluster
    d = ((a.xy[:, None] - a.xy[None]) ** 2).sum(-1) + np.eye(80) * 1e9
    nearest = d.argmin(1)
    assert ((nearest < 40) == (np.arange(80) < 40)).all()
    with pytest.raises(convscope.ConvscopeError, match="unknown embedding"):
        embedding(x, "isomap")
    with pytest.raises(convscope.ConvscopeError, match="at least 3"):
        embedding(x[:2], "pca")


def test_grid_snapping_gives_each_point_its_own_cell():
    # points already on a 3 x 3 grid stay where they are
    pts = np.array([(c, r) for r in range(3) for c in range(3)], dtype=float)
    cells, cols, rows = snap_to_grid(pts)
    assert (cols, rows) == (3, 3) and cells.tolist() == pts.astype(int).tolist()
    for n in (50, 2600):  # the assignment and the greedy pass
        g = np.random.default_rng(n)
        cells, cols, rows = snap_to_grid(g.normal(size=(n, 2)))
        assert len({tuple(c) for c in cells.tolist()}) == n
        assert cells.min() >= 0 and (cells[:, 0] < cols).all() and (cells[:, 1] < rows).all()


def test_embedding_map_places_framed_thumbnails(folder):
    x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    emb = embedding(x, "pca")
    thumbs = [np.full((8, 8, 3), 60 * i, dtype=np.uint8) for i in range(4)]
    canvas = embedding_map(emb, thumbs, labels=[0, 0, 1, 1], label_names=["cat", "dog"], cell=8)
    step = 8 + 2 * 3
    assert canvas.width == 2 * step and canvas.height > 2 * step  # a legend below the grid
    cells, _, _ = snap_to_grid(emb.xy)
    frame = {tuple(canvas.getpixel((int(c) * step, int(r) * step))) for c, r in cells[:2]}
    assert len(frame) == 1  # the same label, the same frame colour
    c, r = cells[3]
    assert canvas.getpixel((int(c) * step + 3 + 4, int(r) * step + 3 + 4)) == (180, 180, 180)


def test_survey_is_mining_features_and_predictions_in_one_pass(folder, tmp_path):
    from convscope.corpus.survey import survey

    (folder / "a/c/p02.jpg").write_bytes(b"bad")
    bundle = tiny_bundle()
    s = survey(bundle, folder, ["conv1", "conv3"], "conv3", k=4, batch_size=8)
    top = convscope.top_units(bundle, folder, ["conv1", "conv3"], k=4, batch_size=8)
    f = features(bundle, folder, "conv3", cache_dir=tmp_path, batch_size=8)
    for name in ("conv1", "conv3"):
        assert torch.equal(s.top[name].image_indices, top[name].image_indices)
        assert torch.equal(s.top[name].values, top[name].values)
    assert np.array_equal(s.valid, f.valid) and not s.valid[2]
    np.testing.assert_array_equal(s.features[s.valid], np.asarray(f.array)[f.valid])
    assert s.top1[s.valid].tolist() == np.asarray(f.top1)[f.valid].tolist() and s.top1[2] == -1
