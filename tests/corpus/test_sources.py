"""Corpora: stable global indices, what is picked up, fingerprints, the built-in crops, and how
undecodable items travel through the DataLoader."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

import convscope
import convscope.corpus as corpus
from convscope.corpus.sources import batches
from tests.corpus.conftest import LAYOUT, write_images
from tests.models import tiny_bundle


def test_folder_index_is_sorted_relative_path_recursive(folder):
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes(b"")
    c = corpus.open(folder)
    assert len(c) == len(LAYOUT)
    assert c.relpaths == sorted(LAYOUT)
    assert c.label(0) == "a/c/p00.jpg" and c.label(8) == "b/img00.png" and c.label(31) == "z15.png"
    # the order does not depend on how the file system lists the folder
    assert corpus.open(str(folder)).relpaths == c.relpaths


def test_empty_folder_and_folder_of_non_images_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(corpus.CorpusError, match="holds no image files"):
        corpus.open(tmp_path / "empty")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("x")
    (docs / "b.csv").write_text("1,2")
    with pytest.raises(corpus.CorpusError, match="holds no image files"):
        corpus.open(docs)
    with pytest.raises(corpus.CorpusError, match="does not exist"):
        corpus.open(tmp_path / "missing")
    with pytest.raises(corpus.CorpusError, match="is empty"):
        corpus.open([])


def test_fingerprint_changes_with_the_files(folder):
    before = corpus.open(folder).fingerprint()
    assert corpus.open(folder).fingerprint() == before
    write_images(folder, ["b/new.png"], seed=5)
    added = corpus.open(folder).fingerprint()
    assert added != before
    p = folder / "b/new.png"
    os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))
    assert corpus.open(folder).fingerprint() != added


def test_paths_and_dataset_corpora(folder):
    paths = [folder / "z03.png", folder / "b/img01.png"]
    c = corpus.open(paths)
    assert len(c) == 2 and c.label(1).endswith("img01.png")
    assert np.array_equal(np.asarray(c.load(0)), np.asarray(Image.open(paths[0]).convert("RGB")))

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return np.full((10, 12, 3), 40 * i, dtype=np.uint8), i

    d = corpus.open(Pairs(), fingerprint="v1")
    assert isinstance(d, corpus.DatasetCorpus) and len(d) == 3
    assert np.asarray(d.load(2))[0, 0, 0] == 80
    assert d.fingerprint() != corpus.open(Pairs(), fingerprint="v2").fingerprint()


def test_sample_crops_are_seeded_deterministic_and_a_prefix():
    a, b = corpus.open("samples-crops:12"), corpus.open("samples-crops")
    assert len(a) == 12 and len(b) == 4096
    for i in (0, 7, 11):
        assert a.spec(i) == b.spec(i)
        assert np.array_equal(np.asarray(a.load(i)), np.asarray(b.load(i)))
    specs = [b.spec(i) for i in range(200)]
    assert len({s.sample for s in specs}) > 10  # many photos
    assert 0.3 < np.mean([s.flip for s in specs]) < 0.7  # flips about half the time
    im = b.load(3)
    assert max(im.size) == specs[3].size  # rescaled to its size
    other = corpus.SampleCrops(12, seed=1)
    assert other.fingerprint() != a.fingerprint()
    assert [other.spec(i) for i in range(12)] != [a.spec(i) for i in range(12)]
    with pytest.raises(corpus.CorpusError, match="samples-crops:N"):
        corpus.open("samples-crops:many")


def test_samples_corpus_lists_the_sample_photos():
    c = corpus.open("samples")
    assert c.label(0) == "sample:astronaut"
    assert c.load(0).size == (512, 512)


def test_undecodable_file_is_skipped_in_its_batch_not_fatal(folder):
    (folder / "b/img03.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    c = corpus.open(folder)
    bad = c.relpaths.index("b/img03.png")
    bundle = tiny_bundle()
    got = list(batches(c, bundle, [0, 1, 2, 3], 8, num_workers=2))
    assert [b.number for b in got] == [0, 1, 2, 3]
    assert [i for b in got for i, _ in b.skipped] == [bad]
    assert "b/img03.png" in got[1].skipped[0][1]  # the reason names the file
    assert got[1].indices.tolist() == [i for i in range(8, 16) if i != bad]
    assert got[1].x.shape == (7, 3, 24, 24)
    # the model's input is the bundle's preprocessing of the image
    x_ref, _ = bundle.prepare([c.load(0)])
    assert torch.equal(got[0].x[:1], x_ref)


def test_shapes_world_corpus_is_the_generator_indexed_and_mined_with_its_model():
    from convscope.data.shapes import SHAPES, generate

    c = corpus.open("shapes:6")
    assert len(c) == 6 and c.name == "shapes:6" and c.kind == "shapes"
    world = generate(6, 0)
    for i in (0, 5):
        pixels = torch.from_numpy(np.array(c.load(i))).permute(2, 0, 1).float() / 255
        assert (pixels - world.images[i]).abs().max() <= 0.5 / 255 + 1e-6  # 8-bit rounding only
        assert c.truth(i).masks[0].equal(world.masks[i])
        assert c.label(i).startswith(f"shapes {i}: {SHAPES[int(world.labels['shape'][i])]}")
    # a prefix of the full world; another seed is another corpus
    assert np.array_equal(np.asarray(corpus.open("shapes").load(5)), np.asarray(c.load(5)))
    assert corpus.ShapesCorpus(6, seed=1).fingerprint() != c.fingerprint()
    with pytest.raises(corpus.CorpusError, match="write shapes or shapes:N"):
        corpus.open("shapes:x")
    with pytest.raises(IndexError):
        c.load(6)
    # mining shapes-cnn over it reads the same inputs as the model's own preprocessing
    bundle = convscope.load_model("shapes-cnn")
    r = convscope.top_units(bundle, c, "relu3", k=2, batch_size=4)
    with torch.no_grad():
        x = bundle.prepare([c.load(i) for i in range(6)])[0]
        acts = {}
        h = bundle.model.relu3.register_forward_hook(lambda m, i, o: acts.setdefault("a", o))
        try:
            bundle.model(x)
        finally:
            h.remove()
    best = acts["a"].flatten(2).amax(2)  # (6 images, 64 channels)
    assert r["relu3"].values[:, 0].tolist() == pytest.approx(best.amax(0).tolist(), rel=1e-5)
