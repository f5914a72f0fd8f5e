"""compare(), explain()'s batch_size for multi-pass methods, method extras, and the CLI's
several-method figures."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

import convscope
from convscope.cli.main import main
from convscope.core.guard import fingerprints_equal, model_fingerprint, preserved
from tests.models import TinyCNN, tiny_input


class FunctionalRelu(nn.Module):
    """No rectifier modules (guided backprop cannot reach its relus) and no GAP + linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 16 * 16, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def test_compare_runs_every_method_with_the_same_targets():
    model = TinyCNN()
    before = model_fingerprint(model)
    x = tiny_input(3)
    c = convscope.compare(
        model, x, "all", target=[0, 3, 1], layer="relu6", options={"smoothgrad": {"seed": 0}}
    )
    results, skipped = c.explanations, c.skipped
    assert skipped == {}
    assert sorted(results) == convscope.methods()
    for name, r in results.items():
        assert r.method == name and r.targets == [0, 3, 1] and r.maps.shape == (3, 16, 16)
        # each equals the method run alone
        alone = convscope.explain(
            model, x, name, [0, 3, 1], "relu6", **({"seed": 0} if name == "smoothgrad" else {})
        )
        torch.testing.assert_close(r.maps, alone.maps)
    assert fingerprints_equal(before, model_fingerprint(model))


def test_compare_skips_what_cannot_apply_with_the_reason():
    c = convscope.compare(
        FunctionalRelu(), tiny_input(2), ["gradcam", "cam", "guided_backprop", "saliency"]
    )
    results, skipped = c.explanations, c.skipped
    assert sorted(results) == ["gradcam", "saliency"]
    assert "global average pooling" in skipped["cam"] or "linear" in skipped["cam"]
    assert "relu" in skipped["guided_backprop"].lower()
    # every method tried has its time, also the skipped ones (until they gave up)
    assert list(c.seconds) == ["gradcam", "cam", "guided_backprop", "saliency"]
    assert all(t > 0 for t in c.seconds.values())
    with pytest.raises(convscope.ConvscopeError, match="global average pooling|linear"):
        convscope.compare(FunctionalRelu(), tiny_input(2), ["gradcam", "cam"], skip=False)


def test_compare_runs_a_method_at_its_own_layer():
    model = TinyCNN()
    x = tiny_input(2)
    c = convscope.compare(
        model, x, ["gradcam", "layercam"], layer="relu6", layers={"layercam": "conv2"}
    )
    assert (
        c.explanations["gradcam"].layer == "relu6" and c.explanations["layercam"].layer == "conv2"
    )
    alone = convscope.explain(model, x, "layercam", layer="conv2")
    torch.testing.assert_close(c.explanations["layercam"].maps, alone.maps)


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        (dict(methods=[]), "no methods given"),
        (dict(methods=["gradcam", "gradcan"]), "did you mean: gradcam"),
        (dict(layer="conv9"), "unknown layer 'conv9'"),  # an error, not every CAM skipped
        (dict(methods=["gradcam"], options={"smoothgrad": {}}), "not compared: smoothgrad"),
        (dict(methods=["gradcam"], layers={"layercam": "conv2"}), "not compared: layercam"),
        (dict(methods=["gradcam"], layers={"gradcam": "conv9"}), "unknown layer 'conv9'"),
        (dict(methods=["gradcam"], batch_size=0), "batch_size must be a positive integer"),
    ],
)
def test_compare_bad_input(kwargs, msg):
    with pytest.raises(convscope.ConvscopeError, match=msg):
        convscope.compare(TinyCNN(), tiny_input(2), **kwargs)


@pytest.mark.parametrize(
    "method, options, copies",
    [
        ("occlusion", dict(window=8, stride=4), 3 * 3),  # 3 x 3 windows on 16 x 16
        ("scorecam", {}, 16),  # conv3's channels
        ("smoothgrad", dict(n_samples=5, seed=0), 5),
    ],
)
def test_explain_batch_size_bounds_the_rows_of_every_pass(method, options, copies):
    """For multi-pass methods ``batch_size`` is the method's own: the perturbed copies of all
    images share passes of at most ``batch_size`` rows (counted at the model's input)."""
    model = TinyCNN()
    x = tiny_input(3)
    default = convscope.explain(model, x, method, layer="conv3", **options)
    sizes: list[int] = []
    handle = model.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    try:
        r = convscope.explain(model, x, method, layer="conv3", batch_size=7, **options)
    finally:
        handle.remove()
    torch.testing.assert_close(r.maps, default.maps, rtol=1e-5, atol=1e-6)
    assert sizes[0] == 3  # the clean batch
    assert max(sizes[1:]) == 7  # copies of different images share a pass
    assert sum(sizes[1:]) == 3 * copies


def test_method_extras_reach_the_explanation():
    model = TinyCNN()
    x = tiny_input(4)
    r = convscope.explain(model, x, "ablationcam", layer="relu6", batch_size=6)
    (weights,) = r.meta["extras"]["weights"]  # one entry per layer
    assert weights.shape == (4, 16)
    assert r.meta["extras"]["split"] == [True]
    # images explained in two batches: the per-image values are joined along the image axis
    whole = convscope.explain(model, x, "gradcam++", layer="relu6")
    halves = convscope.explain(model, x, "gradcam++", layer="relu6", batch_size=2)
    assert halves.meta["extras"].keys() == whole.meta["extras"].keys()
    for key, value in whole.meta["extras"].items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(halves.meta["extras"][key], value)


def test_frozen_parameters_inside_and_restored_after_an_error():
    model = TinyCNN()
    model.conv1.weight.requires_grad_(False)
    with pytest.raises(RuntimeError, match="boom"), preserved(model, frozen=True):
        assert not any(p.requires_grad for p in model.parameters())
        raise RuntimeError("boom")
    assert [p.requires_grad for p in model.parameters()] == [False] + [True] * 7


def test_cli_several_methods_make_one_figure_per_image(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["explain", "sample:coffee", "sample:rocket", "--method", "gradcam,saliency,cam"]
    assert main([*args, "-O", "cam:fc_layer=_fc", "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["coffee_compare.png", "rocket_compare.png"]
    with Image.open(out / "coffee_compare.png") as im:
        w, h = im.size
    # rows by family, each starting with the photo: [saliency], then [gradcam, cam]
    assert (w, h) == (round(3 * 2.3 * 110), round(2 * 2.75 * 110))
    assert "coffee: 3 methods for 'espresso'" in capsys.readouterr().out


@pytest.mark.parametrize(
    "option, message",
    [
        ("n_samples", "is not KEY=VALUE"),
        ("n_samples=3", "no method here takes option 'n_samples'"),
        ("gradcam:n_samples=3", "gradcam does not take option 'n_samples'"),
        ("smoothgrad:seed=3", "for smoothgrad, which is not run"),
    ],
)
def test_cli_bad_options_are_one_line_errors(tmp_path, capsys, option, message):
    out = tmp_path / "never"
    code = main(["explain", "sample:coffee", "--method", "gradcam,saliency", "-O", option])
    assert code != 0 and not out.exists()
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_a_methods_own_batch_size_option_wins_over_the_calls():
    """``batch_size`` among a method's options (``-O scorecam:batch_size=5``) bounds that
    method's passes; the call's ``batch_size`` applies to the others."""
    model = TinyCNN()
    x = tiny_input(3)
    sizes: list[int] = []
    handle = model.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    try:
        c = convscope.compare(
            model,
            x,
            ["scorecam", "occlusion"],
            layer="conv3",
            batch_size=7,
            options={"scorecam": {"batch_size": 5}, "occlusion": {"window": 8, "stride": 8}},
        )
        results, skipped = c.explanations, c.skipped
    finally:
        handle.remove()
    assert skipped == {}
    # scorecam: the clean batch, then its masked copies in passes of at most 5 rows; then
    # occlusion: the clean batch and 3 x 4 occluded copies in passes of at most 7
    assert sizes[0] == 3 and max(sizes[1:-3]) == 5
    assert sizes[-3:] == [3, 7, 5]
    alone = convscope.explain(model, x, "scorecam", layer="conv3", batch_size=5)
    torch.testing.assert_close(results["scorecam"].maps, alone.maps)


def test_cli_batch_size_as_a_method_option(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["explain", "sample:coffee", "--method", "occlusion", "--raw", "-o"]
    common = ["-O", "window=112", "-O", "stride=112"]
    assert main([*args, str(out / "a"), *common, "-O", "batch_size=2"]) == 0
    assert main([*args, str(out / "b"), *common, "--batch-size", "3"]) == 0
    import numpy as np

    a, b = np.load(out / "a" / "coffee_occlusion.npy"), np.load(out / "b" / "coffee_occlusion.npy")
    # the same map: batches of 2 and 3 rows differ only by float32 rounding in the convolutions
    assert a.shape == (224, 224) and np.abs(a - b).max() <= 1e-5 * np.abs(b).max()
    assert "espresso" in capsys.readouterr().out
