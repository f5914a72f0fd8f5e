"""The user's model is sacred: every method, on success and on failure, leaves it exactly as it was
(weights and buffers bitwise, training flags, requires_grad flags, .grad, hooks, modules)."""

from __future__ import annotations

import pytest
import torch

import convscope
from convscope.core.guard import fingerprints_equal, model_fingerprint
from tests.models import TinyBN, TinyCNN, tiny_input


def _prepare(model):
    """A model in a state a method might disturb: training mode, mixed requires_grad, user hooks."""
    model.train()
    first = next(model.parameters())
    first.requires_grad_(False)
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(1))
    next(iter(model.children())).register_forward_pre_hook(lambda m, i: None)
    return calls


def _raises_and_leaves_model_unchanged(model, error, match, **kwargs):
    """``explain(model, 2 tiny images, **kwargs)`` raises ``error`` (matching ``match``) and the
    model, prepared as a user's might be, is exactly as before."""
    _prepare(model)
    before = model_fingerprint(model)
    with pytest.raises(error, match=match):
        convscope.explain(model, tiny_input(2), **kwargs)
    assert fingerprints_equal(before, model_fingerprint(model))


def _boom(out):
    raise RuntimeError("target failed mid-method")


@pytest.mark.parametrize("method", convscope.methods())
@pytest.mark.parametrize("factory", [TinyCNN, TinyBN], ids=["tinycnn", "tinybn"])
def test_success_leaves_model_unchanged(method, factory):
    model = factory()
    calls = _prepare(model)
    before = model_fingerprint(model)
    x = tiny_input(2)
    r = convscope.explain(model, x, method=method, target=[0, 1])
    assert r.maps.shape == (2, 16, 16)
    assert fingerprints_equal(before, model_fingerprint(model))
    assert model.training and calls  # user's hook still fires and training mode is back


@pytest.mark.parametrize("method", convscope.methods())
@pytest.mark.parametrize("factory", [TinyCNN, TinyBN], ids=["tinycnn", "tinybn"])
def test_failure_leaves_model_unchanged(method, factory):
    """Also on TinyCNN, whose reused and in-place modules the methods hook per call."""
    _raises_and_leaves_model_unchanged(
        factory(), RuntimeError, "mid-method", method=method, target=_boom
    )


LAYER_METHODS = [m for m in convscope.methods() if convscope.method_info(m).needs_layer]


@pytest.mark.parametrize("method", LAYER_METHODS)
def test_non_4d_layer_is_refused_by_every_layer_method(method):
    """A layer whose output is not a feature map: one clear LayerError naming the layer and its
    shape, from every method that needs a layer, on the model with reused and in-place modules."""
    _raises_and_leaves_model_unchanged(
        TinyCNN(),
        convscope.LayerError,
        r"'fc' outputs shape \(2, 5\), not a 4-D",
        method=method,
        layer="fc",
    )


def test_ablationcam_failure_after_the_tail_is_built_leaves_model_unchanged():
    calls = []

    def fail_in_tail(out):
        """Scores the clean batch, then fails on the first ablated copy (the tail is built)."""
        calls.append(out.shape[0])
        if len(calls) > 1:
            raise RuntimeError("target failed mid-method")
        return out[:, 0]

    _raises_and_leaves_model_unchanged(
        TinyCNN(), RuntimeError, "mid-method", method="ablationcam", target=fail_in_tail
    )
    assert calls == [2, 2]


def test_ablationcam_refuses_a_zero_score_and_leaves_model_unchanged():
    _raises_and_leaves_model_unchanged(
        TinyCNN(),
        convscope.MethodError,
        r"score, which is exactly 0 for image\(s\) 1",
        method="ablationcam",
        target=lambda o: o[:, 0] * torch.tensor([1.0, 0.0]),
    )


def test_batchnorm_statistics_are_not_updated():
    model = TinyBN().train()
    stats = model.bn.running_mean.clone()
    convscope.explain(model, tiny_input(4) * 10 + 3, method="gradcam")
    assert torch.equal(model.bn.running_mean, stats)


def test_fingerprint_detects_changes():
    """The checker itself must be able to fail."""
    model = TinyCNN()
    before = model_fingerprint(model)
    model.act.register_forward_hook(lambda *a: None)
    assert not fingerprints_equal(before, model_fingerprint(model))
    model = TinyCNN()
    before = model_fingerprint(model)
    with torch.no_grad():
        model.fc.bias[0] += 1e-7
    assert not fingerprints_equal(before, model_fingerprint(model))
    model = TinyCNN()
    before = model_fingerprint(model)
    model.eval()
    assert not fingerprints_equal(before, model_fingerprint(model))


# -- dataset level (convscope.corpus): each public entry point, on success and on failure ------


def _corpus_entry_points():
    """(name, call(model, corpus_folder, tmp) -> anything) for every public corpus entry point."""
    return {
        "top_units": lambda m, c, tmp: convscope.top_units(m, c, ["act@1", "conv3"], k=3),
        "top_units_checkpointed": lambda m, c, tmp: convscope.top_units(
            m, c, "conv3", k=2, batch_size=2, checkpoint_dir=tmp, checkpoint_every=1
        ),
        "features": lambda m, c, tmp: convscope.features(m, c, "conv3", cache_dir=tmp),
        "neighbours": lambda m, c, tmp: convscope.neighbours(
            m, [c / "0.png"], c, "conv3", k=2, cache_dir=tmp
        ),
        "build_site": lambda m, c, tmp: _build_site(m, c, tmp),
    }


def _build_site(model, corpus, tmp):
    from convscope.report.site import build_site

    return build_site(
        model,
        tmp / "site",
        corpus=corpus,
        layers=["act@1", "relu6"],
        feature_layer="conv3",
        k=2,
        methods=("gradcam", "guided_backprop"),
        featurevis_steps=2,
        featurevis_size=16,
        embedding_method="pca",
        cache_dir=tmp,
        progress=False,
    )


@pytest.fixture
def tiny_folder(tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
            tmp_path / f"{i}.png"
        )
    return tmp_path


@pytest.mark.parametrize("entry", sorted(_corpus_entry_points()))
def test_corpus_entry_points_leave_model_unchanged(entry, tiny_folder, tmp_path_factory):
    from convscope.core.bundle import ModelBundle, Preprocess

    model = TinyCNN()
    calls = _prepare(model)
    before = model_fingerprint(model)
    bundle = ModelBundle(model, preprocess=Preprocess(resize=16, crop=16))
    _corpus_entry_points()[entry](bundle, tiny_folder, tmp_path_factory.mktemp("ckpt"))
    assert fingerprints_equal(before, model_fingerprint(model))
    assert model.training and calls

    def boom(module, inputs, output):
        raise RuntimeError("failed mid-corpus")

    handle = model.conv3.register_forward_hook(boom)
    before = model_fingerprint(model)
    with pytest.raises(RuntimeError, match="mid-corpus"):
        _corpus_entry_points()[entry](bundle, tiny_folder, tmp_path_factory.mktemp("ckpt"))
    assert fingerprints_equal(before, model_fingerprint(model))
    handle.remove()


# -- feature visualization (convscope.visualize) -------------------------------------------------
VIS_RUNS = {
    "lucid": {"preset": "lucid"},
    "simonyan": {"preset": "simonyan"},
    "yosinski": {"preset": "yosinski"},
    "fooling": {"preset": "fooling"},
}


@pytest.mark.parametrize("run", sorted(VIS_RUNS))
@pytest.mark.parametrize("factory", [TinyCNN, TinyBN], ids=["tinycnn", "tinybn"])
def test_visualize_leaves_model_unchanged(run, factory):
    model = factory()
    calls = _prepare(model)
    before = model_fingerprint(model)
    layer = "conv3" if factory is TinyCNN else "conv"
    r = convscope.visualize(
        model, ["class:1", f"channel:{layer}:2"], steps=2, size=16, **VIS_RUNS[run]
    )
    assert r.images.shape[0] in (2, 8)
    assert fingerprints_equal(before, model_fingerprint(model))
    assert model.training and calls


def test_visualize_failure_mid_run_leaves_model_unchanged():
    from convscope.featurevis import custom

    model = TinyCNN()
    _prepare(model)
    before = model_fingerprint(model)
    steps = []

    def fail_later(p):
        steps.append(1)
        if len(steps) > 2:
            raise RuntimeError("objective failed mid-run")
        return p.activations["act@1"].mean(dim=(1, 2, 3))

    with pytest.raises(RuntimeError, match="mid-run"):
        convscope.visualize(model, custom(fail_later, ["act@1"]), steps=5, size=16)
    assert len(steps) == 3
    assert fingerprints_equal(before, model_fingerprint(model))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"objective": "channel:conv3:99"}, "out of range"),
        ({"objective": "neuron:fc:1"}, "4-D"),
        ({"objective": "class:9"}, "out of range"),
        ({"objective": "class:1", "preset": "fooling", "l2": 0.1}, "contradicts"),
    ],
)
def test_visualize_bad_input_leaves_model_unchanged(kwargs, match):
    model = TinyCNN()
    _prepare(model)
    before = model_fingerprint(model)
    objective = kwargs.pop("objective")
    with pytest.raises(convscope.ConvscopeError, match=match):
        convscope.visualize(model, objective, steps=2, size=16, **kwargs)
    assert fingerprints_equal(before, model_fingerprint(model))


# -- inside the network (convscope.inside): every entry point, on success and on failure ---------


def _mlp_image_model():
    from torch import nn

    return nn.Sequential(
        nn.Flatten(), nn.Linear(3 * 16 * 16, 6), nn.ReLU(inplace=True), nn.Linear(6, 3)
    )


INSIDE_CALLS = {
    "layer_stats": (
        TinyCNN,
        lambda m: convscope.layer_stats(m, tiny_input(3), batch_size=2).chart(),
        lambda m: convscope.layer_stats(m, tiny_input(3), ["conv1", "fc"]),  # fc is not 4-D
    ),
    "activations": (
        TinyCNN,
        lambda m: convscope.activations(m, tiny_input(2)).strip(1),
        lambda m: convscope.activations(m, tiny_input(2), ["conv1", "fc"]),  # fc is not 4-D
    ),
    "filters": (
        TinyCNN,
        lambda m: convscope.filters(m, input_shape=(3, 16, 16)).order("similarity").grid(),
        lambda m: convscope.filters(m, "act"),  # no weights
    ),
    "weight_templates": (
        _mlp_image_model,
        lambda m: convscope.weight_templates(m, "first", (3, 16, 16), hidden_to_output=True),
        lambda m: convscope.weight_templates(m, "3", (3, 16, 16)),  # reads 6 features, no image
    ),
    "receptive_field": (
        TinyCNN,
        lambda m: [
            convscope.receptive_fields(m, "all", 16),
            convscope.receptive_field(m, "act@1", 16).box(2, 3),
        ],
        lambda m: convscope.receptive_field(m, "conv2", 16, channels=4),  # cannot run
    ),
    "effective_receptive_field": (
        TinyCNN,
        lambda m: convscope.effective_receptive_field(m, tiny_input(2), "act@1", position=(1, 2)),
        lambda m: convscope.effective_receptive_field(m, tiny_input(2), "conv2", position=(9, 9)),
    ),
    "explain a unit": (
        TinyCNN,
        lambda m: [
            convscope.explain(m, tiny_input(2), method, target="act@1:1:2:2", **opts)
            for method, opts in [
                ("saliency", {}),
                ("guided_backprop", {}),
                ("deconvnet", {}),
                ("smoothgrad", {"n_samples": 2}),
                ("integrated_gradients", {"steps": 2}),
                ("gradcam", {"layer": "conv2"}),
            ]
        ],
        # fails inside the forward pass, with the unit's recorder in place
        lambda m: convscope.explain(m, tiny_input(2), "guided_backprop", target="conv3:1:9:9"),
    ),
}


@pytest.mark.parametrize("entry", sorted(INSIDE_CALLS))
def test_inside_entry_points_leave_model_unchanged(entry):
    factory, ok, bad = INSIDE_CALLS[entry]
    model = factory()
    calls = _prepare(model)
    before = model_fingerprint(model)
    ok(model)
    assert fingerprints_equal(before, model_fingerprint(model))
    calls.clear()
    model(tiny_input(1))  # the user's hook still fires (filters("first") stops its own pass early)
    assert model.training and calls
    before = model_fingerprint(model)
    with pytest.raises(convscope.ConvscopeError):
        bad(model)
    assert fingerprints_equal(before, model_fingerprint(model))


# -- the shapes world (convscope.metrics.truth, convscope.train.analysis) -------------------------


def _shapes_cnn(classes=10):
    from convscope.models.shapes import ShapesCNN

    torch.manual_seed(0)
    return ShapesCNN(classes)


def _softmax():
    from convscope.models.shapes import SoftmaxRegression

    return SoftmaxRegression()


def _truth(model, **kwargs):
    from convscope.metrics.truth import attribution_vs_truth

    return attribution_vs_truth(model, ["gradcam", "saliency"], n=2, **kwargs)


def _correlations(model):
    from convscope.train.analysis import template_correlations

    return template_correlations(model, n=20)


SHAPES_CALLS = {
    # 5 outputs: the shapes' classes 5..9 are targets out of range, refused mid-way
    "attribution_vs_truth": (_shapes_cnn, _truth, lambda m: _truth(_FiveWay(m))),
    "template_correlations": (_softmax, _correlations, lambda m: _correlations(_Wrapped(m))),
}


class _FiveWay(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)[:, :5]


class _Wrapped(torch.nn.Module):  # no layer named fc or hidden
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


@pytest.mark.parametrize("entry", sorted(SHAPES_CALLS))
def test_shapes_entry_points_leave_model_unchanged(entry):
    factory, ok, bad = SHAPES_CALLS[entry]
    model = factory()
    calls = _prepare(model)
    before = model_fingerprint(model)
    ok(model)
    assert fingerprints_equal(before, model_fingerprint(model))
    assert model.training and calls
    with pytest.raises(convscope.ConvscopeError):
        bad(model)
    assert fingerprints_equal(before, model_fingerprint(model))


@pytest.mark.parametrize("factory", [TinyCNN, TinyBN], ids=["tinycnn", "tinybn"])
def test_layer_listing_compare_and_scoring_leave_model_unchanged(factory):
    from convscope.core.layer_listing import auto_layer, list_layers, parametric_layers
    from convscope.metrics import evaluate_comparison
    from convscope.metrics.sanity import checkpoint_layers

    model = factory()
    calls = _prepare(model)
    before = model_fingerprint(model)
    x = tiny_input(2)
    list_layers(model, x)
    auto_layer(model, x)
    checkpoint_layers(model, parametric_layers(model, x), 2)
    c = convscope.compare(model, x, ["gradcam", "saliency", "cam"], target=[0, 1], skip=True)
    assert set(c.explanations) <= {"gradcam", "saliency", "cam"}
    rows = evaluate_comparison(convscope.load_model(model), x, c, steps=2, batch_size=3)
    assert [r["method"] for r in rows] == list(c.explanations)
    assert fingerprints_equal(before, model_fingerprint(model))
    assert model.training and calls


# -- the explorer (convscope.server): its routes drive the model through the API ------------------


def test_explorer_routes_leave_model_unchanged(tmp_path):
    pytest.importorskip("fastapi")
    import io

    from fastapi.testclient import TestClient
    from PIL import Image

    from convscope.core.bundle import ModelBundle, Preprocess
    from convscope.server.app import create_app

    model = TinyCNN()
    calls = _prepare(model)
    before = model_fingerprint(model)
    bundle = ModelBundle(model, preprocess=Preprocess(resize=16, crop=16), default_layer="conv3")
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), (90, 30, 200)).save(buf, "PNG")
    with TestClient(create_app(bundle, cache_dir=tmp_path)) as client:
        image = client.post(
            "/api/images", content=buf.getvalue(), headers={"Content-Type": "image/png"}
        ).json()["id"]
        for method in ("gradcam", "guided_backprop", "nope"):
            client.get(f"/api/images/{image}/map", params={"method": method})
        client.get(f"/api/images/{image}/map", params={"layer": "nope"})
        client.get(f"/api/images/{image}/activations", params={"layer": "relu6"})
        job = client.post("/api/units/relu6:1/featurevis", params={"steps": 2, "size": 16}).json()
        for _ in range(200):
            if client.get(f"/api/jobs/{job['id']}").json()["state"] in ("done", "failed"):
                break
            import time

            time.sleep(0.05)
    assert fingerprints_equal(before, model_fingerprint(model))
    assert model.training and calls
