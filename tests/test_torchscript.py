"""TorchScript models: the methods that need no hooks run and match the nn.Module's maps; the others
are refused with one line that says why and what to use; compare runs what applies."""

from __future__ import annotations

import warnings

import pytest
import torch

import convscope
from convscope.core.guard import fingerprints_equal, model_fingerprint
from convscope.core.registry import get_method
from convscope.errors import MethodError
from tests.models import TinyCNN, tiny_input

HOOKLESS = ["integrated_gradients", "occlusion", "saliency", "smoothgrad"]


def scripted(kind: str) -> tuple[torch.nn.Module, torch.jit.ScriptModule, torch.Tensor]:
    model, x = TinyCNN().eval(), tiny_input(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.10+ deprecates TorchScript
        sm = torch.jit.script(model) if kind == "script" else torch.jit.trace(model, x)
    return model, sm, x


@pytest.fixture(params=["script", "trace"])
def kind(request):
    return request.param


def test_hookless_methods_match_the_modules_maps(kind):
    model, sm, x = scripted(kind)
    for method in HOOKLESS:
        options = {"n_samples": 4, "seed": 0} if method == "smoothgrad" else {}
        if method == "integrated_gradients":
            options = {"steps": 8}
        want = convscope.explain(model, x, method, target=[1, 3], **options)
        got = convscope.explain(sm, x, method, target=[1, 3], **options)
        torch.testing.assert_close(got.maps, want.maps, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", sorted(set(convscope.methods()) - set(HOOKLESS)))
def test_hook_methods_are_refused_in_one_line_and_the_model_is_untouched(kind, method):
    _, sm, x = scripted(kind)
    before = model_fingerprint(sm)
    with pytest.raises(MethodError) as err:
        convscope.explain(sm, x, method)
    text = str(err.value)
    assert text.startswith(f"{get_method(method).name} needs hooks") and "TorchScript" in text
    assert "use saliency, smoothgrad, integrated_gradients or occlusion" in text
    assert "\n" not in text and "has none" not in text
    assert fingerprints_equal(before, model_fingerprint(sm))


def test_compare_runs_what_applies_and_lists_the_rest(kind):
    _, sm, x = scripted(kind)
    c = convscope.compare(sm, x, ["gradcam", "saliency", "guided_backprop", "occlusion"])
    results, skipped = c.explanations, c.skipped
    assert list(results) == ["saliency", "occlusion"]
    assert set(skipped) == {"gradcam", "guided_backprop"}
    assert all("TorchScript" in why for why in skipped.values())


def test_list_layers_gives_names_and_types_without_shapes(kind):
    _, sm, x = scripted(kind)
    rows = {r.name: r for r in convscope.list_layers(sm, x)}
    assert rows["conv1"].type == "Conv2d" and rows["conv1"].output_shape is None
    assert rows["conv1"].params == 8 * 3 * 9 + 8 and "fc" in rows


def test_a_saved_torchscript_file_from_the_cli(tmp_path, capsys):
    _, sm, _ = scripted("script")
    path = tmp_path / "model.pt"
    sm.save(str(path))
    out = tmp_path / "out"
    # the README's example: an input-space method on a TorchScript file
    from convscope.cli.main import main

    assert (
        main(
            [
                "explain",
                "sample:coffee",
                "--model",
                str(path),
                "--method",
                "saliency",
                "--target",
                "3",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert (out / "coffee_saliency.png").exists()
    assert (
        main(
            [
                "explain",
                "sample:coffee",
                "--model",
                str(path),
                "--layer",
                "conv3",
                "-o",
                str(tmp_path / "never"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert (
        "gradcam needs hooks on the model's layers, which TorchScript models do not support" in err
    )
    assert not (tmp_path / "never").exists()
    assert main(["layers", "--model", str(path)]) == 0
    text = capsys.readouterr().out
    assert "conv1" in text and "Conv2d" in text and "TorchScript" in text
