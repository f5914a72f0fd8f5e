"""The shapes world: deterministic per (seed, index), shapes of the right area, truth that agrees
with the pixels, and clear errors."""

from __future__ import annotations

import math

import pytest
import torch

from convscope.data import shapes as S
from convscope.errors import ConvscopeError


@pytest.fixture(scope="module")
def world():
    return S.generate(96, seed=5)


def test_shapes_and_types(world):
    images, masks, labels = world
    assert images.shape == (96, 3, 64, 64) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    assert masks.shape == (96, 64, 64) and masks.dtype == torch.int64
    assert set(labels) == set(S.TASKS)
    for task, names in S.TASKS.items():
        assert labels[task].shape == (96,) and labels[task].dtype == torch.int64
        assert labels[task].min() >= 0 and labels[task].max() < len(names)
    assert len(S.SHAPES) == 10 and S.TASKS["shape"] == S.SHAPES


def test_image_depends_on_seed_and_index_only(world):
    again = S.generate(40, seed=5, start=30)
    assert torch.equal(again.images, world.images[30:70])
    assert torch.equal(again.masks, world.masks[30:70])
    for task in S.TASKS:
        assert torch.equal(again.labels[task], world.labels[task][30:70])
    picked = S.generate_indices([70, 3, 3], seed=5)
    assert torch.equal(picked.images[0], world.images[70])
    assert torch.equal(picked.images[1], picked.images[2])
    assert not torch.equal(S.generate(8, seed=6).images, world.images[:8])
    ds = S.ShapesDataset(96, seed=5, task="colour")
    image, label = ds[17]
    assert torch.equal(image, world.images[17]) and label == int(world.labels["colour"][17])
    assert len(ds) == 96
    with pytest.raises(IndexError):
        ds[96]
    chunks = list(S.batches(40, seed=5, stop=96))
    assert [len(c) for c in chunks] == [40, 40, 16]
    assert torch.equal(torch.cat([c.images for c in chunks]), world.images)


def test_masks_agree_with_instances_and_labels(world):
    images, masks, labels = world
    inst, classes = world.instances, world.classes
    assert torch.equal(masks == 0, inst == 0)
    for i in range(len(world)):
        ids, areas = inst[i][inst[i] > 0].unique(return_counts=True)
        # every visible instance's pixels carry its class in the class mask
        for k in ids.tolist():
            assert (masks[i][inst[i] == k] == classes[i, k - 1] + 1).all()
        assert int(labels["count"][i]) == len(ids) == int((classes[i] >= 0).sum())
        biggest = int(ids[areas.argmax()])
        assert int(labels["shape"][i]) == int(classes[i, biggest - 1])
        # the quadrant of the biggest shape: its pixels' centroid, when clear of the midlines
        ys, xs = (inst[i] == biggest).nonzero(as_tuple=True)
        cy, cx = ys.float().mean() + 0.5, xs.float().mean() + 0.5
        if abs(cy - 32) > 6 and abs(cx - 32) > 6:
            assert int(labels["quadrant"][i]) == int(cx > 32) + 2 * int(cy > 32)


def test_colour_label_is_the_colour_of_the_biggest_shape(world):
    images, masks, labels = world
    palette = torch.tensor([S._PALETTE[c] for c in S.COLOURS])
    checked = 0
    for i in range(len(world)):
        if S.SHAPES[int(labels["shape"][i])] in ("stripes", "checks"):
            continue  # textured: half the pixels are a dark shade
        inst = world.instances[i]
        ids, areas = inst[inst > 0].unique(return_counts=True)
        region = inst == ids[areas.argmax()]
        # interior pixels only (no anti-aliased edge): all four neighbours in the region too
        core = region.clone()
        core[1:-1, 1:-1] &= (
            region[:-2, 1:-1] & region[2:, 1:-1] & region[1:-1, :-2] & region[1:-1, 2:]
        )
        rgb = images[i][:, core].median(dim=1).values
        nearest = int((palette - rgb).abs().sum(dim=1).argmin())
        assert nearest == int(labels["colour"][i])
        assert (rgb - palette[nearest]).abs().max() <= 0.05 + 1e-6  # the tint is within +-0.05
        checked += 1
    assert checked > 50


def test_each_shape_has_its_geometric_area():
    """Areas of the signed-distance shapes on a fine grid against the closed forms."""
    s = 801
    c = (torch.arange(s, dtype=torch.float64) + 0.5) * (2.4 / s) - 1.2
    y, x = c.view(s, 1), c.view(1, s)
    cell = (2.4 / s) ** 2
    inner = 0.42
    expected = {
        "circle": math.pi * 0.85**2,
        "square": 1.36**2,
        "triangle": 3 * math.sqrt(3) * 0.46**2,
        "star": 5 * 1.0 * inner * math.sin(math.pi / 5),  # n R r sin(pi/n)
        "cross": 2 * (1.84 * 0.52) - 0.52**2,
        "bar": 1.9 * 0.44,
        "ring": math.pi * (0.88**2 - 0.44**2),
        "stripes": math.pi * 0.88**2,
        "checks": 1.4**2,
    }
    for name, area in expected.items():
        got = float((S._sdf(S.SHAPES.index(name), x, y) <= 0).sum()) * cell
        assert got == pytest.approx(area, rel=0.01), name
        assert (S._sdf(S.SHAPES.index(name), x, y) <= 0)[x.abs().expand(s, s) > 1.0].sum() == 0
    # the crescent: the disk less its overlap with the bite (a lens), by Monte Carlo on the grid
    r = torch.hypot(x, y)
    crescent = (r <= 0.88) & (torch.hypot(x - 0.42, y + 0.1) >= 0.72)
    got = float((S._sdf(S.SHAPES.index("crescent"), x, y) <= 0).sum())
    assert got == pytest.approx(float(crescent.sum()), rel=0.01)


def test_grayscale_is_the_luminance_and_gray28_is_centred():
    rgb = S.generate(6, seed=1)
    gray = S.generate(6, seed=1, grayscale=True)
    lum = 0.299 * rgb.images[:, 0] + 0.587 * rgb.images[:, 1] + 0.114 * rgb.images[:, 2]
    assert gray.images.shape == (6, 1, 64, 64)
    assert torch.allclose(gray.images[:, 0], lum, atol=1e-6)
    g = S.generate(200, seed=2, **S.GRAY28)
    assert g.images.shape == (200, 1, 28, 28)
    assert (g.labels["count"] == 1).all()
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    on = (g.masks > 0).float()
    cy = (on * ys).sum(dim=(1, 2)) / on.sum(dim=(1, 2))
    cx = (on * xs).sum(dim=(1, 2)) / on.sum(dim=(1, 2))
    # within a pixel of the centre, plus the offset of the asymmetric shapes (crescent, triangle)
    assert ((cy - 13.5).abs() < 6).all() and ((cx - 13.5).abs() < 6).all()
    assert float((cy - 13.5).abs().median()) < 1.5
    # shapes are brighter than any background: the truth is visible in grayscale too
    for i in range(20):
        if S.SHAPES[int(g.labels["shape"][i])] not in ("stripes", "checks"):
            assert g.images[i, 0][g.masks[i] > 0].median() > g.images[i, 0][g.masks[i] == 0].max()


def test_draws_are_uniform_and_classes_balanced():
    d = S._Draws(0, torch.arange(20000))
    u = d.uniform(3, (5,))
    assert u.shape == (20000, 5) and u.min() >= 0 and u.max() < 1
    counts = torch.histc(u.flatten(), bins=10, min=0, max=1)
    expected = u.numel() / 10
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 27.9  # 9 degrees of freedom, p = 0.001
    v = d.uniform(4, (5,))
    corr = torch.corrcoef(torch.stack([u.flatten(), v.flatten()]))[0, 1]
    assert abs(float(corr)) < 0.02
    labels = S.generate(2000, seed=0, size=32, count=1, radius=(0.4, 0.6)).labels
    freq = torch.bincount(labels["shape"], minlength=10).float() / 2000
    assert (freq - 0.1).abs().max() < 0.03
    assert torch.bincount(labels["size"], minlength=3).min() > 500


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 16}, "too small for the shapes"),
        ({"count": (0, 2)}, "count must be"),
        ({"count": (1, 9)}, "count must be"),
        ({"radius": (0.5, 0.2)}, "radius must be"),
        ({"backgrounds": ("plaid",)}, "backgrounds must be"),
        ({"jitter": 2}, "jitter"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_options_raise_one_clear_error(kwargs, match):
    with pytest.raises(ConvscopeError, match=match):
        S.generate(2, **kwargs)
    with pytest.raises(ConvscopeError, match="n must be"):
        S.generate(-1)
    with pytest.raises(ConvscopeError, match="unknown task"):
        S.ShapesDataset(4, task="hue")


def test_cli_shapes_writes_a_sheet_and_refuses_a_tiny_size(tmp_path, capsys):
    from PIL import Image

    from convscope.cli.main import main

    assert main(["shapes", "--n", "6", "--out", str(tmp_path / "s")]) == 0
    sheet = Image.open(tmp_path / "s" / "shapes.png")
    # 6 cells in one row: each 64*2 wide plus padding, two 128-pixel tiles and a caption high
    assert sheet.size == (4 + 6 * (128 + 4), 4 + (2 * 128 + 14) + 4)
    assert main(["shapes", "--size", "12", "--out", str(tmp_path / "t")]) == 2
    assert "too small for the shapes" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()
