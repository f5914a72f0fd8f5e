"""Models whose output is a tuple, a dict or an output object: ``output=`` names the logits, and
every method then gives the maps it gives on the plain model; without it, one clear error."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

import convscope
from convscope.core.guard import fingerprints_equal, model_fingerprint
from convscope.errors import ModelError
from tests.models import TinyCNN, tiny_input

# cheap settings for the multi-pass methods (the same for both models)
OPTIONS = {
    "smoothgrad": {"n_samples": 3, "seed": 0},
    "integrated_gradients": {"steps": 4},
    "occlusion": {"window": 8, "stride": 8},
}


@dataclass
class Output:
    """A Hugging Face-style output object."""

    loss: torch.Tensor | None
    logits: torch.Tensor

    def keys(self):
        return ["logits"]

    def __getitem__(self, key):
        return getattr(self, key)


class Heads(nn.Module):
    """TinyCNN's logits, with an auxiliary head, returned as a tuple, a dict or an object."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.net, self.kind = TinyCNN(), kind
        self.aux = nn.Linear(5, 3)

    def forward(self, x):
        logits = self.net(x)
        aux = self.aux(logits)
        if self.kind == "tuple":
            return aux, logits
        if self.kind == "dict":
            return {"aux": aux, "logits": logits}
        return Output(None, logits)


SELECT = {"tuple": 1, "dict": "logits", "object": "logits"}


@pytest.mark.parametrize("method", convscope.methods())
def test_every_method_gives_the_plain_models_maps(method):
    model = Heads("tuple")
    x = tiny_input(2)
    layer = {"layer": "net.relu6"} if convscope.method_info(method).needs_layer else {}
    plain = convscope.explain(
        model.net,
        x,
        method,
        target=[1, 3],
        **OPTIONS.get(method, {}),
        **({"layer": "relu6"} if layer else {}),
    )
    before = model_fingerprint(model)
    got = convscope.explain(
        model, x, method, target=[1, 3], output=1, **layer, **OPTIONS.get(method, {})
    )
    torch.testing.assert_close(got.maps, plain.maps, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(got.output, plain.output)
    assert got.targets == [1, 3]
    assert fingerprints_equal(before, model_fingerprint(model))  # the hook is gone


@pytest.mark.parametrize("kind", ["tuple", "dict", "object"])
def test_index_key_attribute_and_callable_selectors(kind):
    model, x = Heads(kind), tiny_input(2)
    plain = convscope.explain(model.net, x, "saliency")
    for selector in (SELECT[kind], lambda out: out[SELECT[kind]]):
        got = convscope.explain(model, x, "saliency", output=selector)
        torch.testing.assert_close(got.maps, plain.maps)
        assert got.top_predictions(2) == plain.top_predictions(2)
    bundle = convscope.load_model(model, output=SELECT[kind])  # on the bundle
    torch.testing.assert_close(
        convscope.explain(bundle, x, "gradcam", layer="net.conv3").maps,
        convscope.explain(model.net, x, "gradcam", layer="conv3").maps,
    )


def test_a_callable_target_receives_the_selected_logits():
    model, x = Heads("tuple"), tiny_input(2)
    got = convscope.explain(model, x, "saliency", output=1, target=lambda o: o[:, 3] - o[:, 1])
    want = convscope.explain(model.net, x, "saliency", target=lambda o: o[:, 3] - o[:, 1])
    torch.testing.assert_close(got.maps, want.maps)


@pytest.mark.parametrize("kind", ["tuple", "dict", "object"])
def test_without_a_selector_one_clear_error_and_the_model_untouched(kind):
    model = Heads(kind)
    before = model_fingerprint(model)
    with pytest.raises(ModelError, match="not one tensor of logits; say which part") as err:
        convscope.explain(model, tiny_input(2), "gradcam", layer="net.conv3")
    text = str(err.value)
    assert "\n" not in text and "output=" in text and "(2, 5) tensor" in text
    assert fingerprints_equal(before, model_fingerprint(model))


def test_bad_selectors_are_one_line_errors():
    model, x = Heads("tuple"), tiny_input(2)
    with pytest.raises(ModelError, match=r"output=5 does not name a part .*tuple of 2"):
        convscope.explain(model, x, "saliency", output=5)
    with pytest.raises(ModelError, match=r"output='logits' does not name a part"):
        convscope.explain(model, x, "saliency", output="logits")
    with pytest.raises(ModelError, match=r"output=.* gives tuple of 2"):
        convscope.explain(model, x, "saliency", output=lambda o: o)


def test_compare_takes_the_selector():
    model, x = Heads("dict"), tiny_input(2)
    c = convscope.compare(model, x, ["gradcam", "saliency"], layer="net.conv3", output="logits")
    results, skipped = c.explanations, c.skipped
    assert set(results) == {"gradcam", "saliency"} and not skipped


def test_faithfulness_metrics_use_the_bundles_selector():
    from convscope import metrics

    model, x = Heads("dict"), tiny_input(2)
    bundle = convscope.load_model(model, output="logits")
    got = metrics.evaluate(bundle, x, ["saliency"], steps=4)[0]
    plain = convscope.load_model(model.net)  # a bundle too: the same black level
    want = metrics.evaluate(plain, x, ["saliency"], steps=4)[0]
    for key in ("deletion_auc", "insertion_auc", "average_drop", "increase_in_confidence"):
        assert got[key] == pytest.approx(want[key], rel=1e-5), key
    maps = convscope.explain(bundle, x, "saliency")
    torch.testing.assert_close(
        metrics.deletion(bundle, x, maps, steps=4).curves,
        metrics.deletion(plain, x, maps, steps=4).curves,
    )
    with pytest.raises(ModelError, match="not one tensor of logits"):
        metrics.deletion(model, x, maps, steps=4)
