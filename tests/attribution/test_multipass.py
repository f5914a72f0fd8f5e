"""What the multi-pass methods (smoothgrad, integrated_gradients, occlusion) share: per-image
targets on the perturbed copies, chunking by ``batch_size``, callable targets, the memory format."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convscope
from tests.helpers import TINY_TARGETS, run_method
from tests.models import TinyCNN, tiny_input
from tests.reference import assert_parity

CASES = {
    "smoothgrad": {"n_samples": 5, "seed": 3},
    "integrated_gradients": {"steps": 6},
    "occlusion": {"window": 6, "stride": 4},
}
METHODS = sorted(CASES)


@pytest.mark.parametrize("method", METHODS)
def test_registered(method):
    info = convscope.method_info(method)
    assert info.family == "gradient" and not info.needs_layer


@pytest.mark.parametrize("method", METHODS)
def test_batch_size_does_not_change_the_result(method):
    model = TinyCNN().eval()
    x = tiny_input(4, 16)
    ref, _ = run_method(method, model, x, TINY_TARGETS, **CASES[method], batch_size=None)
    for batch_size in (1, 3, 1000):
        out, _ = run_method(method, model, x, TINY_TARGETS, **CASES[method], batch_size=batch_size)
        # float rounding depends on the batch size (occlusion subtracts nearly equal scores)
        assert_parity(out.maps, ref.maps, f"{method} batch_size={batch_size} vs one chunk")
        assert_parity(
            out.extras["attributions"].flatten(1, 2),
            ref.extras["attributions"].flatten(1, 2),
            f"{method} attributions batch_size={batch_size} vs one chunk",
        )


@pytest.mark.parametrize("method", METHODS)
def test_each_copy_uses_its_image_class(method):
    """A batch with a different target per image = each image explained alone."""
    model = TinyCNN().eval()
    x = tiny_input(4, 16)
    batch, _ = run_method(method, model, x, TINY_TARGETS, **CASES[method], batch_size=3)
    for i, t in enumerate(TINY_TARGETS):
        options = dict(CASES[method])
        if method == "smoothgrad":
            options["seed"] += i  # image i's noise generator is seeded seed + i
        alone, _ = run_method(method, model, x[i : i + 1], [t], **options)
        assert_parity(batch.maps[i : i + 1], alone.maps, f"{method} image {i} in a batch vs alone")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("score", ["logit", "prob", "logprob"])
def test_callable_targets_see_whole_copies_of_the_batch(method, score):
    """A callable that indexes its batch by position (so needs the clean batch's size and order)
    gives what the class targets give, also with a batch_size smaller than the batch."""
    model = TinyCNN().eval()
    x = tiny_input(4, 16)
    sizes = []

    def per_position(out):
        sizes.append(out.shape[0])
        values = {"logit": out, "prob": out.softmax(1), "logprob": out.log_softmax(1)}[score]
        return values[torch.arange(4), torch.tensor(TINY_TARGETS)]

    ref, _ = run_method(method, model, x, TINY_TARGETS, score=score, **CASES[method])
    for batch_size in (None, 3, 9):
        sizes.clear()
        out, ctx = run_method(
            method, model, x, per_position, **CASES[method], batch_size=batch_size
        )
        assert set(sizes) == {4}, sizes
        assert_parity(out.maps, ref.maps, f"{method} callable target vs class target ({score})")
        assert ctx.target.indices is None
        torch.testing.assert_close(ctx.target.last_scores, per_position(model(x)).detach())


@pytest.mark.parametrize("method", METHODS)
def test_target_state_is_the_clean_one(method):
    """explain reads ctx.target.indices and last_scores: they must be the clean input's."""
    model = TinyCNN().eval()
    x = tiny_input(4, 16)
    r = convscope.explain(model, x, method=method, target="top2", **CASES[method])
    with torch.no_grad():
        out = model(x)
    top2 = out.argsort(dim=1, descending=True)[:, 1]
    assert r.targets == top2.tolist()
    torch.testing.assert_close(r.scores, out.gather(1, top2[:, None])[:, 0])
    torch.testing.assert_close(r.output, out)
    assert r.maps.shape == r.raw_maps.shape == (4, 16, 16)


class FormatRecorder(nn.Module):
    """TinyCNN that records the memory format of every input it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.net = TinyCNN()
        self.channels_last: list[bool] = []

    def forward(self, x):
        self.channels_last.append(
            x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        )
        return self.net(x)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("channels_last", [False, True])
def test_copies_keep_the_input_memory_format(method, channels_last):
    """Convolutions use other kernels for channels-last inputs (on Lite0 the gradients differ by
    ~1e-3), so the perturbed copies keep the clean input's format."""
    model = FormatRecorder().eval()
    x = tiny_input(3, 16)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    run_method(method, model, x, **CASES[method], batch_size=4)
    assert len(model.channels_last) > 2
    assert model.channels_last == [channels_last] * len(model.channels_last)


@pytest.mark.parametrize("method", METHODS)
def test_parameters_get_no_gradient(method):
    model = TinyCNN().eval()
    run_method(method, model, tiny_input(2, 16), **CASES[method])
    assert all(p.grad is None for p in model.parameters())
