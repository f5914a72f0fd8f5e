"""convscope.explain inside torch.inference_mode(): the same maps as outside, the mode kept."""

from __future__ import annotations

import pytest
import torch

import convscope
from convscope.errors import ModelError
from tests.models import TinyCNN, tiny_input


@pytest.mark.parametrize("method", ["gradcam", "saliency", "guided_backprop", "occlusion"])
def test_explain_in_inference_mode_gives_the_same_maps(method):
    model, x = TinyCNN(), tiny_input(2)
    outside = convscope.explain(model, x, method)
    with torch.inference_mode():
        inside = convscope.explain(model, x, method)
        assert torch.is_inference_mode_enabled()  # the caller's mode is back
    torch.testing.assert_close(inside.maps, outside.maps)
    with torch.inference_mode():
        made_inside = tiny_input(2)  # an inference tensor as input
    torch.testing.assert_close(convscope.explain(model, made_inside, method).maps, outside.maps)


def test_compare_and_images_in_inference_mode(lite0):
    with torch.inference_mode():
        c = convscope.compare(lite0, "sample:coffee", ["gradcam", "saliency"])
        results, skipped = c.explanations, c.skipped
    assert set(results) == {"gradcam", "saliency"} and not skipped
    assert results["gradcam"].target_names == ["espresso"]


def test_a_model_made_in_inference_mode_is_one_clear_error():
    with torch.inference_mode():
        model = TinyCNN()
        with pytest.raises(ModelError, match="made inside torch.inference_mode"):
            convscope.explain(model, tiny_input(2), "saliency")
