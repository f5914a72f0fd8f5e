"""Half-precision models: methods run on a float16 or bfloat16 model (inputs cast to its dtype)
and return float32 maps, or refuse with one clear error when half precision overflowed; never a
silent NaN map. (On a GPU, scripts/gpu_check.py runs every method on a float16 Lite0.)"""

from __future__ import annotations

import pytest
import torch

import convscope
from convscope.errors import MethodError
from tests.models import TinyCNN, tiny_input

OPTIONS = {"occlusion": {"window": 8, "stride": 8}}
CAMS = ["gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "cam", "eigencam"]


@pytest.mark.parametrize("method", convscope.methods())
def test_bfloat16_model_gives_float32_maps_like_float32(method):
    x = tiny_input(2, 32)
    half = TinyCNN().eval().to(torch.bfloat16)
    full = TinyCNN().eval()
    r = convscope.explain(half, x, method, target=[1, 2], **OPTIONS.get(method, {}))
    assert r.maps.dtype == r.raw_maps.dtype == torch.float32
    assert bool(torch.isfinite(r.maps).all())
    assert next(half.parameters()).dtype == torch.bfloat16  # the model stays as it was
    if method in CAMS:  # one pass, layer-space maps: within bfloat16's precision (8 bits)
        ref = convscope.explain(full, x, method, target=[1, 2]).raw_maps
        err = (r.raw_maps - ref).abs().max() / ref.abs().max()
        assert err < 0.05, float(err)


def test_float16_overflow_is_refused_not_a_nan_map():
    model = TinyCNN().eval()
    with torch.no_grad():
        model.fc.weight.mul_(1e5)  # logits beyond float16's 65504: inf, then NaN gradients
    model = model.half()
    x = tiny_input(2, 32)
    assert not bool(torch.isfinite(model(x.half())).all())
    with pytest.raises(MethodError, match="float16 model gave non-finite values.*float32"):
        convscope.explain(model, x, "gradcam", target=[1, 2])
