"""Yosinski et al.'s four regularizer settings on the bundled EfficientNet-Lite0: four different
images, and each regularizer's own mark on its image (exact zeros of the clipping, smoothness of
the blur, the decay's smaller image), at a small size and few steps."""

from __future__ import annotations

import torch

import convscope
from convscope.featurevis.presets import PER_COPY, PRESETS
from convscope.featurevis.render import pixel_space

STEPS = 21  # the blur runs after steps 0, 4, ..., 20: the last step blurs
SIZE = 64


def _high_frequency_share(dev: torch.Tensor) -> torch.Tensor:
    """(N,): the energy of each deviation's discrete Laplacian over its energy."""
    lap = (
        4 * dev[:, :, 1:-1, 1:-1]
        - dev[:, :, :-2, 1:-1]
        - dev[:, :, 2:, 1:-1]
        - dev[:, :, 1:-1, :-2]
        - dev[:, :, 1:-1, 2:]
    )
    return lap.square().flatten(1).sum(1) / dev.square().flatten(1).sum(1)


def test_yosinski_four_images_differ_and_show_their_regularizers(lite0):
    kw = {"steps": STEPS, "size": SIZE, "seed": 0}
    r = convscope.visualize(lite0, "class:flamingo", preset="yosinski", **kw)
    center = pixel_space(lite0).center.view(1, 3, 1, 1)
    dev = r.images - center
    # four visibly different images: every pair differs by > 4/255 on average (measured 6.6-22)
    imgs = r.images * 255
    for i in range(4):
        for j in range(i + 1, 4):
            assert float((imgs[i] - imgs[j]).abs().mean()) > 4, (i, j)
    # every image moved away from its start, by more than a grey level on average (the rates
    # converted by the input scale alone left all four within 1/255 of the mean image)
    assert all(float(dev[k].abs().mean()) * 255 > 1 for k in range(4))
    # clipping by norm (50 %, 20 %) and by contribution (90 %): those pixels are exactly the mean
    at_mean = (dev.abs().sum(1) == 0).flatten(1).float().mean(1)
    torch.testing.assert_close(at_mean, torch.tensor([0.5, 0.2, 0.0, 0.9]), atol=2e-3, rtol=0)
    # the progress rule raised the class logit of the first setting well above its start
    assert float(r.values[0]) > float(r.trace[0, 0]) + 10

    # each operator's own effect: the same settings without it, same seed and copies
    d = dict(PRESETS["yosinski"].defaults)
    no_blur = {k: (v[2] if isinstance(v, tuple) else v) for k, v in d.items()}
    no_blur.update(blur_every=0, blur_sigma=0.0)
    no_decay = {k: (v[1] if isinstance(v, tuple) else v) for k, v in d.items()}
    no_decay.update(decay=0.0)
    opts = {k: (no_decay[k], no_decay[k], no_blur[k], no_decay[k]) for k in PER_COPY}
    opts.update(init_std=d["init_std"], lr_units=d["lr_units"])
    fixed = {"param": "pixels", "optimizer": "ascent", "transforms": "none", "init": "random"}
    a = convscope.visualize(lite0, "class:flamingo", **kw, **fixed, **opts)
    dev_a = a.images - center
    # the blur (sigma 1 every 4 steps) keeps setting 3 smooth: a third of the high-frequency
    # share or less of the same run without it (measured 0.57 vs 12)
    hf = _high_frequency_share(dev[2:3]), _high_frequency_share(dev_a[2:3])
    assert float(hf[0]) < float(hf[1]) / 3, hf
    # the decay 0.3 holds setting 2 near the mean image: a smaller deviation than the same run
    # without it (measured 8.9 vs 22.9)
    assert float(dev[1].norm()) < 0.6 * float(dev_a[1].norm())
