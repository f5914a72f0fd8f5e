"""Rows per pass of the multi-pass methods when no batch_size is given (core.perturbed_batches)."""

from __future__ import annotations

import pytest
import torch

import convscope
from convscope.core.perturbed_batches import CPU_PASS_BYTES, default_rows
from tests.models import TinyCNN, tiny_input


def test_default_rows_on_a_cpu_fit_the_byte_budget():
    image = torch.empty(1, 3, 224, 224)  # float32: 602,112 bytes a row
    assert CPU_PASS_BYTES // (3 * 224 * 224 * 4) == 4
    assert default_rows(64, image) == 4
    assert default_rows(2, image) == 2  # never more than the method's own default
    assert default_rows(64, torch.empty(1, 3, 448, 448)) == 1  # at least one row
    assert default_rows(64, torch.empty(1, 3, 224, 224, dtype=torch.float16)) == 8
    assert default_rows(64, torch.empty(1, 3, 16, 16)) == 64  # small inputs: the default
    assert default_rows(64, torch.empty(1, 1280, 7, 7)) == 9  # a layer's activation (a tail)
    assert default_rows(25, None) == 25


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_default_rows_on_a_gpu_are_the_methods_own():
    assert default_rows(64, torch.empty(1, 3, 224, 224, device="cuda")) == 64


@pytest.mark.parametrize(
    "method, options, copies",
    [
        ("occlusion", dict(window=112, stride=56), 9),  # 3 x 3 windows a photo
        ("smoothgrad", dict(n_samples=5, seed=0), 5),
        ("integrated_gradients", dict(steps=6), 6),
        ("scorecam", dict(layer="conv3"), 16),  # conv3's channels
    ],
)
def test_without_batch_size_a_cpu_pass_takes_four_imagenet_sized_rows(method, options, copies):
    model = TinyCNN()
    x = tiny_input(2, 224)
    sizes: list[int] = []
    handle = model.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    try:
        r = convscope.explain(model, x, method, target=[0, 1], **options)
    finally:
        handle.remove()
    if method == "integrated_gradients":
        assert sizes.pop() == 2  # the baseline, for the completeness check
    assert sizes[0] == 2  # the clean batch
    assert max(sizes[1:]) == 4 and sum(sizes[1:]) == 2 * copies
    same = convscope.explain(model, x, method, target=[0, 1], batch_size=64, **options)
    torch.testing.assert_close(r.maps, same.maps, rtol=1e-5, atol=1e-6)
