"""Top-k mining on a tiny model against a reference computed without convscope's machinery;
results on disk; k beyond the corpus; undecodable files; checkpoints: resume, stale, refused."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import convscope
import convscope.corpus as corpus
from convscope.core.guard import fingerprints_equal, model_fingerprint
from convscope.corpus.stream import CheckpointError
from tests.corpus.conftest import write_images
from tests.corpus.test_topk import reference
from tests.models import TinyCNN, tiny_bundle


def tiny_layers(model: TinyCNN, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """TinyCNN's conv1 and conv3 outputs, written out layer by layer (no hooks)."""
    with torch.no_grad():
        a1 = model.conv1(x)
        a = F.relu(model.conv2(F.relu(a1)))
        return {"conv1": a1, "conv3": model.conv3(F.relu(a))}


def all_inputs(c, bundle):
    return bundle.prepare([c.load(i) for i in range(len(c))])[0]


def test_top_units_match_the_definition(folder):
    bundle = tiny_bundle()
    c = corpus.open(folder)
    r = convscope.top_units(bundle, c, ["conv1", "conv3"], k=4, batch_size=5)
    acts = tiny_layers(bundle.model, all_inputs(c, bundle))
    for name in ("conv1", "conv3"):
        ref = reference(acts[name], list(range(len(c))), 4, "max")
        got = r[name]
        assert got.values.shape == (acts[name].shape[1], 4)
        assert got.shape == tuple(acts[name].shape[1:])
        for ch, rows in enumerate(ref):
            assert got.image_indices[ch].tolist() == [row[1] for row in rows]
            assert [tuple(p) for p in got.positions[ch].tolist()] == [row[2] for row in rows]
            assert got.values[ch].tolist() == pytest.approx([row[0] for row in rows], rel=1e-5)
        assert got.neuron(2, 0) == f"{name}:2:{got.positions[2, 0, 0]}:{got.positions[2, 0, 1]}"
    assert r.meta["images"] == 32 and r.meta["k"] == 4 and r.meta["skipped"] == []
    assert r.meta["corpus"]["fingerprint"] == c.fingerprint()
    assert r.meta["input_size"] == [24, 24]


def test_mean_reduction_and_batch_size_do_not_change_the_answer(folder):
    bundle = tiny_bundle()
    c = corpus.open(folder)
    a = convscope.top_units(bundle, c, "conv3", k=3, reduce="mean", batch_size=32)
    b = convscope.top_units(bundle, c, "conv3", k=3, reduce="mean", batch_size=3, num_workers=2)
    ref = reference(
        tiny_layers(bundle.model, all_inputs(c, bundle))["conv3"], list(range(32)), 3, "mean"
    )
    assert a.image_indices.tolist() == [[row[1] for row in rows] for rows in ref]
    assert torch.equal(a.image_indices, b.image_indices)
    assert torch.equal(a.positions, b.positions)
    torch.testing.assert_close(a.values, b.values)


def test_k_larger_than_the_corpus_lists_every_image(folder):
    paths = [folder / "z00.png", folder / "z01.png", folder / "z02.png"]
    r = convscope.top_units(tiny_bundle(), paths, "conv3", k=9)
    assert r.values.shape == (16, 3) and r.meta["k"] == 3 and r.meta["k_requested"] == 9
    assert all(sorted(row) == [0, 1, 2] for row in r.image_indices.tolist())


def test_corrupt_file_among_good_ones_is_skipped_and_reported(folder, caplog):
    (folder / "b/img02.png").write_bytes(b"not a png at all")
    c = corpus.open(folder)
    bad = c.relpaths.index("b/img02.png")
    with caplog.at_level("WARNING", logger="convscope.corpus"):
        r = convscope.top_units(tiny_bundle(), c, "conv3", k=32, batch_size=8)
    assert r.meta["images"] == 31 and r.values.shape == (16, 31)
    assert [i for i, _ in r.skipped] == [bad] and r.meta["skipped_labels"] == ["b/img02.png"]
    assert bad not in r.image_indices.flatten().tolist()
    assert "b/img02.png" in caplog.text


def test_a_corpus_where_nothing_decodes_is_an_error(tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.jpg").write_bytes(b"garbage")
    with pytest.raises(convscope.ConvscopeError, match=r"no image .* could be decoded \(3 skipped"):
        convscope.top_units(tiny_bundle(), tmp_path, "conv3")


def test_non_4d_layer_and_bad_options_are_refused_and_the_model_is_untouched(folder):
    bundle = tiny_bundle()
    bundle.model.train()
    before = model_fingerprint(bundle.model)
    with pytest.raises(convscope.LayerError, match=r"'fc' outputs shape \(\d+, 5\), not a 4-D"):
        convscope.top_units(bundle, folder, "fc")
    with pytest.raises(convscope.ConvscopeError, match="k must be"):
        convscope.top_units(bundle, folder, "conv3", k=0)
    with pytest.raises(convscope.ConvscopeError, match="unknown reduce"):
        convscope.top_units(bundle, folder, "conv3", reduce="median")
    with pytest.raises(convscope.LayerError, match="conv9"):
        convscope.top_units(bundle, folder, "conv9")
    assert fingerprints_equal(before, model_fingerprint(bundle.model))


def test_save_and_load_round_trip(folder, tmp_path):
    r = convscope.top_units(tiny_bundle(), folder, ["conv1", "conv3"], k=2)
    r.save(tmp_path / "out")
    back = convscope.load_top_units(tmp_path / "out")
    for name in ("conv1", "conv3"):
        for key in ("values", "image_indices", "positions"):
            assert torch.equal(getattr(back[name], key), getattr(r[name], key))
        assert back[name].shape == r[name].shape
    assert back.meta["corpus"] == r.meta["corpus"] and back.meta["k"] == 2
    with pytest.raises(convscope.ConvscopeError, match="no readable top-k"):
        convscope.load_top_units(tmp_path)


def _fail_on_call(model, n):
    calls = []

    def hook(module, inputs):
        calls.append(1)
        if len(calls) == n:
            raise RuntimeError("interrupted")

    return model.register_forward_pre_hook(hook)


def test_interrupted_run_resumes_from_its_checkpoint_with_an_identical_result(folder, tmp_path):
    bundle = tiny_bundle()
    whole = convscope.top_units(bundle, folder, ["conv1", "conv3"], k=5, batch_size=3)
    ckpt = tmp_path / "ckpt"
    handle = _fail_on_call(bundle.model, 5)  # batches 0-3 done, checkpoint after each
    with pytest.raises(RuntimeError, match="interrupted"):
        convscope.top_units(
            bundle,
            folder,
            ["conv1", "conv3"],
            k=5,
            batch_size=3,
            checkpoint_dir=ckpt,
            checkpoint_every=2,
        )
    handle.remove()
    assert (ckpt / "mine-checkpoint-rank0.pt").exists()

    with pytest.raises(CheckpointError, match="holds an unfinished run"):
        convscope.top_units(
            bundle, folder, ["conv1", "conv3"], k=5, batch_size=3, checkpoint_dir=ckpt
        )
    with pytest.raises(CheckpointError, match=r"batch size: 3 then, 4 now"):
        convscope.top_units(
            bundle, folder, ["conv1", "conv3"], k=5, batch_size=4, checkpoint_dir=ckpt, resume=True
        )
    with pytest.raises(CheckpointError, match=r"model \(its weights\)"):
        convscope.top_units(
            TinyCNN(seed=3),
            folder,
            ["conv1", "conv3"],
            k=5,
            batch_size=3,
            checkpoint_dir=ckpt,
            resume=True,
        )
    with pytest.raises(CheckpointError, match="layers"):
        convscope.top_units(
            bundle, folder, ["conv3"], k=5, batch_size=3, checkpoint_dir=ckpt, resume=True
        )

    resumed = convscope.top_units(
        bundle, folder, ["conv1", "conv3"], k=5, batch_size=3, checkpoint_dir=ckpt, resume=True
    )
    assert resumed.meta["resumed_at_batch"] == 4
    for name in ("conv1", "conv3"):
        for key in ("values", "image_indices", "positions"):
            assert torch.equal(getattr(resumed[name], key), getattr(whole[name], key))
    assert not (ckpt / "mine-checkpoint-rank0.pt").exists()  # removed once the result exists


def test_a_corpus_that_changed_refuses_the_stale_checkpoint(folder, tmp_path):
    bundle = tiny_bundle()
    handle = _fail_on_call(bundle.model, 3)
    with pytest.raises(RuntimeError):
        convscope.top_units(
            bundle, folder, "conv3", batch_size=4, checkpoint_dir=tmp_path, checkpoint_every=1
        )
    handle.remove()
    write_images(folder, ["b/added.png"], seed=9)
    with pytest.raises(CheckpointError, match=r"corpus \(its files changed, or another corpus\)"):
        convscope.top_units(
            bundle, folder, "conv3", batch_size=4, checkpoint_dir=tmp_path, resume=True
        )
    (tmp_path / "mine-checkpoint-rank0.pt").write_bytes(b"torn")
    with pytest.raises(CheckpointError, match="is unreadable"):
        convscope.top_units(
            bundle, folder, "conv3", batch_size=4, checkpoint_dir=tmp_path, resume=True
        )
