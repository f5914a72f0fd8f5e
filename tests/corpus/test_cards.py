"""Patch boxes, patches and cards on the tiny model, whose receptive fields are known by hand:
conv1 (3x3, stride 1, pad 1) sees rows i-1..i+1; conv3 (after conv2's stride 2) sees a 9x9 box
centred on input row 2i."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import convscope
import convscope.corpus as corpus
from convscope.corpus.cards import activation_maps, layer_cards, unit_card, unit_patches
from tests.models import tiny_bundle


def hand_box(layer: str, i: int, j: int, size: int = 24) -> list[int]:
    half, centre = (1, (i, j)) if layer == "conv1" else (4, (2 * i, 2 * j))
    top, left = centre[0] - half, centre[1] - half
    return [
        max(0, top),
        max(0, left),
        min(size, top + 2 * half + 1),
        min(size, left + 2 * half + 1),
    ]


@pytest.fixture
def mined(folder):
    bundle = tiny_bundle()
    c = corpus.open(folder)
    return bundle, c, convscope.top_units(bundle, c, ["conv1", "conv3"], k=4, batch_size=8)


def test_boxes_are_the_receptive_fields_of_the_positions(mined):
    _, _, top = mined
    for name in ("conv1", "conv3"):
        lt = top[name]
        assert lt.boxes.shape == (*lt.values.shape, 4)
        for ch in range(lt.values.shape[0]):
            for r in range(lt.k):
                i, j = lt.positions[ch, r].tolist()
                assert lt.boxes[ch, r].tolist() == hand_box(name, i, j)


def test_patches_are_cut_from_the_image_the_model_saw(mined, tmp_path):
    bundle, c, top = mined
    lt = top["conv3"]
    patches = unit_patches(top, 5, c, bundle, layer="conv3")
    for r, patch in enumerate(patches):
        t, left, b, right = lt.boxes[5, r].tolist()
        pix = c.pixels(int(lt.image_indices[5, r]), bundle)
        assert pix.shape == (24, 24, 3)
        assert np.array_equal(patch, pix[t:b, left:right])
    card = unit_card(top, 5, c, bundle, layer="conv3", size=32)
    assert card.size == (3 * 35 + 3, 16 + 2 * (32 + 15) + 3)  # 4 hits: 3 per row, 2 rows
    grid = layer_cards(top["conv1"], c, bundle, [0, 1], size=20, per_row=2)
    assert grid.width > 2 * 20
    top.save(tmp_path)
    assert torch.equal(convscope.load_top_units(tmp_path)["conv3"].boxes, lt.boxes)


def test_activation_maps_share_one_scale_and_peak_on_the_best_image(mined):
    from tests.corpus.test_mining import tiny_layers

    bundle, c, top = mined
    ims = activation_maps(top, 2, c, bundle, layer="conv3", alpha=1.0, cmap="gray")
    assert len(ims) == 4 and all(im.size == (24, 24) for im in ims)
    idx = top["conv3"].image_indices[2].tolist()
    x, _ = bundle.prepare([c.load(i) for i in idx])
    maps = tiny_layers(bundle.model, x)["conv3"][:, 2]
    assert float(maps.amax()) == pytest.approx(float(top["conv3"].values[2, 0]), rel=1e-5)
    up = torch.nn.functional.interpolate(maps[:, None], size=(24, 24), mode="bilinear")[:, 0]
    ref = ((up / maps.amax()).clamp(0, 1) * 255).round()
    got = torch.tensor(np.stack([np.asarray(im)[..., 0] for im in ims])).float()
    assert (got - ref).abs().max() <= 1  # grey level = the map on one scale for the card


def test_guided_backprop_beside_each_patch_is_the_neurons_own_cropped(mined):
    bundle, c, top = mined
    from convscope.corpus.cards import guided_patches

    lt = top["conv3"]
    got = guided_patches(top, 5, c, bundle, layer="conv3")
    assert [g.shape[:2] for g in got] == [
        p.shape[:2] for p in unit_patches(top, 5, c, bundle, layer="conv3")
    ]
    # reference: guided backprop of the same neuron through convscope.explain, one image at a time
    for r in (0, 3):
        i = int(lt.image_indices[5, r])
        x, _ = bundle.prepare([c.load(i)])
        g = convscope.explain(
            bundle, x, method="guided_backprop", target=lt.neuron(5, r)
        ).attributions[0]
        t, left, b, right = lt.boxes[5, r].tolist()
        crop = g[:, t:b, left:right]
        ref = ((0.5 + 0.5 * crop / crop.abs().amax()).clamp(0, 1) * 255).round().permute(1, 2, 0)
        assert np.abs(got[r].astype(int) - ref.numpy().astype(int)).max() <= 1
    card = unit_card(top, 5, c, bundle, layer="conv3", size=32, guided=True)
    assert card.width == 3 * (2 * 32 + 2 + 3) + 3  # a pair of images per hit
