"""Per-call overhead, checked without a clock: host reads of device values and walks over the
model's modules per call of :func:`convscope.explain`.

On a GPU the model's own passes take a few milliseconds, so what a call does around them decides
its speed. Two things are counted here, on the CPU, so that a regression shows without a GPU:

* host reads of tensor values (``.item()``, ``.tolist()``, ``bool(t)``, ``int(t)``, ``.numpy()``,
  ``.nonzero()``, ...): on a GPU each one waits until the device has finished everything queued
  before it. A method may read back once, at the end (the classes it explained, for the result);
  Ablation-CAM and CAM read more, each for a stated check (a zero class score that the method
  divides by; the model's head checked to be what CAM assumes; the split model checked against
  the whole).
* walks over the whole module tree (``model.named_modules()`` started at the root): one for the
  guard's snapshot, one to find the model's device; more only for methods that look for modules
  of a kind (the rectifier rules, CAM's final linear layer).

``scripts/gpu_check.py`` counts the real synchronizations on a CUDA device
(``torch.cuda.set_sync_debug_mode``).
"""

from __future__ import annotations

import collections

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

import convscope
from tests.models import TinyCNN, tiny_input

# tensor -> host reads: each waits for the device on a GPU
HOST_READS = {
    "item",
    "tolist",
    "numpy",
    "__bool__",
    "__int__",
    "__float__",
    "__index__",
    "nonzero",
    "argwhere",
    "unique",
    "masked_select",
}

# the reads a method may do beyond the one at the end, with why
EXTRA_READS = {
    "cam": 1,  # the head check: linear(global average of the layer) == the model's output
    "ablationcam": 5,  # a zero score (nonzero + tolist); the traced tail checked 3 times
}
EXTRA_WALKS = {
    "cam": 2,  # the final linear layer found by walking the model; and its name
    "guided_backprop": 1,  # the rectifier modules
    "deconvnet": 1,
    "guided_gradcam": 1,
    "ablationcam": 1,  # the tail: torch.fx traces the model
}
OPTIONS = {"occlusion": {"window": 8, "stride": 8}}


class HostReads(TorchFunctionMode):
    """Counts tensor -> host reads made inside the block."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in HOST_READS:
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))


class Walks:
    """Counts walks of ``root.named_modules()`` (``modules()``, ``parameters()`` walk through it)
    started at ``root`` inside the block."""

    def __init__(self, root: nn.Module) -> None:
        self.root, self.count = root, 0

    def __enter__(self) -> Walks:
        original = self.original = nn.Module.named_modules
        walks = self

        def counted(module, memo=None, prefix="", remove_duplicate=True):
            if memo is None and module is walks.root:
                walks.count += 1
            return original(module, memo, prefix, remove_duplicate)

        nn.Module.named_modules = counted
        return self

    def __exit__(self, *exc) -> None:
        nn.Module.named_modules = self.original


@pytest.fixture(scope="module")
def setup():
    model = TinyCNN().eval()
    bundle = convscope.load_model(model)
    x = tiny_input(2, 32)
    for method in convscope.methods():  # first calls fill the caches (registry, auto layer)
        convscope.explain(bundle, x, method, target=[1, 2], **OPTIONS.get(method, {}))
    return model, bundle, x


@pytest.mark.parametrize("method", convscope.methods())
@pytest.mark.parametrize("target", [[1, 2], "top1", "top2"])
def test_one_host_read_per_call(setup, method, target):
    _, bundle, x = setup
    with HostReads() as reads:
        r = convscope.explain(bundle, x, method, target=target, **OPTIONS.get(method, {}))
    assert sum(reads.counts.values()) == 1 + EXTRA_READS.get(method, 0), dict(reads.counts)
    assert reads.counts["tolist"] >= 1  # the one that is always there: the classes explained
    ranked = r.output.argsort(dim=1, descending=True)
    expect = [1, 2] if isinstance(target, list) else ranked[:, int(target[-1]) - 1].tolist()
    assert r.targets == expect  # classes picked on the device are the ones asked for


@pytest.mark.parametrize("method", convscope.methods())
def test_module_walks_per_call(setup, method):
    model, bundle, x = setup
    with Walks(model) as walks:
        convscope.explain(bundle, x, method, target=[1, 2], **OPTIONS.get(method, {}))
    assert walks.count <= 2 + EXTRA_WALKS.get(method, 0)


def test_a_plain_module_is_traced_once_for_its_auto_layer():
    """``layer="auto"`` on a module without a bundle traces a forward pass to find the layer the
    first time; later calls with inputs of the same shape reuse it, and a module swapped in at
    that name is noticed."""
    model = TinyCNN().eval()
    x = tiny_input(2, 32)
    first = convscope.explain(model, x, "gradcam", target=[1, 2])
    with Walks(model) as walks:
        again = convscope.explain(model, x, "gradcam", target=[1, 2])
    assert again.layer == first.layer == "relu6"
    assert torch.equal(again.maps, first.maps)
    assert walks.count <= 2  # no tracing pass (it walks the model to hook every module)
    model.relu6 = nn.ReLU6()  # same place, new module: found again, same answer
    assert convscope.explain(model, x, "gradcam", target=[1, 2]).layer == "relu6"
    assert convscope.load_model(model) is convscope.load_model(model)
