"""Pointing game (with its tolerance), energy, relevance mass and rank accuracy on hand-made maps
and masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convscope.errors import ConvscopeError
from convscope.metrics import (
    energy_pointing_game,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    resize_masks,
)


def box(h, w, r0, r1, c0, c1):
    m = torch.zeros(h, w, dtype=torch.bool)
    m[r0:r1, c0:c1] = True
    return m


def test_pointing_game_hits_and_the_tolerance_disk():
    maps = torch.zeros(4, 40, 40)
    maps[0, 5, 5] = 1.0  # inside the box
    maps[1, 5, 24] = 1.0  # 5 pixels right of the box's last column (19): distance 5
    maps[2, 23, 23] = 1.0  # diagonal from the corner (19, 19): distance sqrt(32) ~ 5.66
    maps[3, 39, 39] = 1.0  # far away
    mask = box(40, 40, 0, 20, 0, 20)
    assert pointing_game(maps, mask, tolerance=0).hits.tolist() == [True, False, False, False]
    assert pointing_game(maps, mask, tolerance=5).hits.tolist() == [True, True, False, False]
    r = pointing_game(maps, mask, tolerance=6)
    assert r.hits.tolist() == [True, True, True, False] and r.accuracy == 0.75
    assert r.points.tolist() == [[5, 5], [5, 24], [23, 23], [39, 39]]
    # the default tolerance is 15 pixels: (39, 39) is 20 * sqrt(2) from (19, 19)
    assert pointing_game(maps, mask).hits.tolist() == [True, True, True, False]


def test_pointing_game_against_a_dilated_mask_and_per_image_masks():
    from scipy import ndimage

    g = torch.Generator().manual_seed(0)
    maps = torch.rand(6, 30, 30, generator=g)
    masks = torch.zeros(6, 30, 30, dtype=torch.bool)
    for i in range(6):
        masks[i, 3 * i : 3 * i + 4, 10 : 12 + i] = True
    tol = 4
    yy, xx = np.mgrid[-tol : tol + 1, -tol : tol + 1]
    disk = yy**2 + xx**2 <= tol**2
    got = pointing_game(maps, masks, tolerance=tol)
    for i in range(6):
        grown = ndimage.binary_dilation(masks[i].numpy(), structure=disk)
        r, c = np.unravel_index(int(maps[i].argmax()), (30, 30))
        assert bool(got.hits[i]) == bool(grown[r, c])


def test_energy_and_relevance_mass_by_hand():
    maps = torch.tensor(
        [
            [[4.0, 1.0], [-2.0, 3.0]],  # positive total 8, inside (top row) 5
            [[-1.0, -1.0], [-1.0, -1.0]],  # nothing positive -> 0
        ]
    )
    mask = torch.tensor([[1, 1], [0, 0]])
    assert energy_pointing_game(maps, mask).tolist() == [5 / 8, 0.0]
    assert relevance_mass_accuracy(maps, mask).tolist() == [5 / 8, 0.0]


def test_relevance_rank_accuracy_by_hand():
    maps = torch.tensor(
        [
            [[9.0, 1.0, 8.0], [7.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
            [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]],  # ties: first pixels by index
        ]
    )
    masks = torch.zeros(2, 3, 3, dtype=torch.bool)
    masks[0, 0, :] = True  # K = 3; top-3 pixels: (0,0), (0,2), (1,0) -> 2 of 3 inside
    masks[1, 0, 1] = masks[1, 2, 2] = True  # K = 2; top-2 by index: (0,0), (0,1) -> 1 of 2
    assert relevance_rank_accuracy(maps, masks).tolist() == pytest.approx([2 / 3, 1 / 2])


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda m: pointing_game(m, torch.ones(5, 5)), "masks must have shape"),
        (lambda m: energy_pointing_game(m, torch.ones(3, 4, 4)), "masks must have shape"),
        (lambda m: pointing_game(m[0], torch.ones(4, 4)), "maps must have shape"),
        (lambda m: relevance_rank_accuracy(m, torch.zeros(4, 4)), "is empty"),
        (lambda m: pointing_game(m, torch.full((4, 4), 2)), "only 0 and 1"),
        (lambda m: pointing_game(m, torch.ones(4, 4), tolerance=-1), "tolerance"),
    ],
)
def test_bad_masks_are_one_line_errors(call, message):
    with pytest.raises(ConvscopeError, match=message) as err:
        call(torch.rand(2, 4, 4))
    assert "\n" not in str(err.value)


def test_masks_at_the_photos_size_are_refused_with_the_way_out():
    maps = torch.rand(2, 4, 4)
    photos = [np.ones((6, 9), dtype=bool), np.ones((5, 5), dtype=bool)]  # sizes differ
    with pytest.raises(ConvscopeError, match=r"resize_masks\(bundle, masks\)") as err:
        pointing_game(maps, photos)
    assert "\n" not in str(err.value) and "(4, 4)" in str(err.value)
    with pytest.raises(ConvscopeError, match=r"got \(6, 9\); masks drawn on the photos"):
        pointing_game(maps, np.ones((6, 9)))
    # a list of same-size masks is one per image
    masks = [box(4, 4, 0, 2, 0, 2), box(4, 4, 2, 4, 2, 4)]
    maps[0, 0, 0] = maps[1, 3, 3] = 10
    assert pointing_game(maps, masks, tolerance=0).hits.tolist() == [True, True]


def test_resize_masks_follows_the_preprocessing_by_hand():
    """Preprocess(resize=4, crop=2) on an 8x12 photo: the shorter side 8 -> 4 (scale 1/2, so
    6x4 with nearest source pixel 2x+1), then the centre 2x2 crop at left 2, top 1: output
    pixel (r, c) comes from photo pixel (2r + 3, 2c + 5)."""
    from convscope.core.bundle import ModelBundle, Preprocess

    bundle = ModelBundle(model=torch.nn.Identity(), preprocess=Preprocess(resize=4, crop=2))
    photo = np.zeros((8, 12), dtype=np.uint8)
    photo[3, 7] = photo[5, 5] = 1  # -> output (0, 1) and (1, 0)
    photo[0, 0] = photo[7, 11] = 1  # cropped away
    out = resize_masks(bundle, [photo, photo.astype(bool).T])
    assert out.dtype == torch.bool and out.shape == (2, 2, 2)
    assert out[0].tolist() == [[False, True], [True, False]]
    # the transposed photo (12x8): output (r, c) from photo pixel (2r + 5, 2c + 3)
    assert out[1].tolist() == [[False, True], [True, False]]
    with pytest.raises(ConvscopeError, match="custom preprocess"):
        resize_masks(ModelBundle(model=torch.nn.Identity(), preprocess=lambda im: None), photo)
    with pytest.raises(ConvscopeError, match="only 0 and 1"):
        resize_masks(bundle, photo * 3)
