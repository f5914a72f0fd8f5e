"""The gradient and one-pass CAM methods: cam, gradcam++, xgradcam, layercam, hirescam, eigencam.

Parity (``raw_maps`` within ``1e-5 * max|reference|`` per image) on a TinyCNN (batch 4, 3x32x32)
and on EfficientNet-Lite0 (batch 4 real photos), a different target for every image, against
torchcam where torchcam implements the paper (CAM, XGrad-CAM, LayerCAM) and against references
written here from the papers otherwise (Grad-CAM++, where torchcam deviates; HiResCAM; Eigen-CAM).
References only address layers the model calls once (captum and torchcam hook a module, not one
call of it); ``_swish@1`` (Lite0's head ReLU6, its 2nd call) is computed from the model's pieces.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torchcam.methods import CAM, GradCAMpp, LayerCAM, XGradCAM

import convscope
from convscope.errors import MethodError
from tests.helpers import LITE0_CAM_TARGETS, TINY_TARGETS, fused, layer_grads, np64, run_method
from tests.models import TinyCNN, tiny_input
from tests.reference import assert_no_hooks, assert_parity, reference_copy

CASES = [("tiny", "conv3"), ("tiny", "relu6"), ("lite0", "_blocks.15"), ("lite0", "_bn1")]
IDS = [f"{m}-{lay}" for m, lay in CASES]
ALL = [
    "cam",
    "gradcam++",
    "xgradcam",
    "layercam",
    "hirescam",
    "scorecam",
    "ablationcam",
    "eigencam",
]


@pytest.fixture
def case(request, device):
    """(model passed to convscope, the nn.Module, input batch, targets) for a model key, on the
    parity tests' device (``--device`` / ``$CONVSCOPE_TEST_DEVICE``; the CPU by default)."""
    if request.param == "tiny":
        model = TinyCNN().eval().to(device)
        return model, model, tiny_input(4, 32).to(device), TINY_TARGETS
    bundle, x = request.getfixturevalue("lite0_on_device")
    assert not bundle.model.training
    return bundle, bundle.model, x, LITE0_CAM_TARGETS


_GRADS: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}


def grads_of(module: nn.Module, layer: str, x: torch.Tensor, targets: list[int]):
    """captum's (A, dS/dA), computed once per (model kind, layer) in this session."""
    key = (type(module).__name__, layer)
    if key not in _GRADS:
        _GRADS[key] = layer_grads(module, layer, x, targets)
    return _GRADS[key]


def torchcam_map(cls, module: nn.Module, layer: str, x: torch.Tensor, targets, **kw):
    """torchcam's un-normalized map (N, h, w) at ``layer``, on a copy; hooks removed on exit."""
    ref = reference_copy(module)
    with cls(ref, target_layer=layer, **kw) as extractor:
        scores = ref(x.clone())
        (cam,) = extractor(class_idx=list(targets), scores=scores, normalized=False)
    assert_no_hooks(ref)
    return cam


def explain(model, x, method, targets, layer, **kw):
    r = convscope.explain(model, x, method=method, target=targets, layer=layer, **kw)
    assert r.targets == list(targets) and r.layer == (
        layer if isinstance(layer, str) else ", ".join(layer)
    )
    return r


# -- paper references written out --------------------------------------------------------------
def gradcampp_reference(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Chattopadhay et al. 2018, eq. 19 (alpha) and eq. 7 (weights), channel by channel:
    alpha_ij = g_ij^2 / (2 g_ij^2 + sum_ab A_ab * g_ij^3) (0 where that is 0/0),
    w = sum_ij alpha_ij ReLU(g_ij), map = ReLU(sum_k w_k A_k)."""
    a, g = np64(a), np64(g)
    n, k = a.shape[:2]
    w = np.zeros((n, k))
    for i in range(n):
        for c in range(k):
            gi, total = g[i, c], a[i, c].sum()
            denom = 2 * gi**2 + total * gi**3
            alpha = np.divide(gi**2, denom, out=np.zeros_like(gi), where=denom != 0)
            w[i, c] = (alpha * np.maximum(gi, 0)).sum()
    return torch.from_numpy(np.maximum(np.einsum("nk,nkhw->nhw", w, a), 0))


def hirescam_reference(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Draelos & Carin 2020: at every location, the sum over channels of gradient times
    activation, then ReLU -- a plain loop over images and locations."""
    a, g = np64(a), np64(g)
    n, k, h, w = a.shape
    out = np.zeros((n, h, w))
    for i in range(n):
        for y in range(h):
            for x in range(w):
                total = 0.0
                for c in range(k):
                    total += g[i, c, y, x] * a[i, c, y, x]
                out[i, y, x] = max(total, 0.0)
    return torch.from_numpy(out)


def eigencam_reference(a: torch.Tensor) -> torch.Tensor:
    """Muhammad & Yeasin 2020: O (hw, K) = U S V^T per image (numpy, float64, not centered),
    map = O v_1, sign chosen so the map sums to >= 0."""
    a = np64(a)
    n, k, h, w = a.shape
    out = np.zeros((n, h, w))
    for i in range(n):
        o = a[i].reshape(k, h * w).T
        _, _, vt = np.linalg.svd(o, full_matrices=False)
        proj = o @ vt[0]
        out[i] = (proj if proj.sum() >= 0 else -proj).reshape(h, w)
    return torch.from_numpy(out)


def lite0_head(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Lite0's ``_swish@1`` (the head ReLU6) from the model's own pieces, on a copy, no hooks."""
    ref = reference_copy(model)
    with torch.no_grad():
        feats = ref.extract_features(x.clone())
        torch.testing.assert_close(ref._fc(feats.mean(dim=(2, 3))), ref(x), rtol=1e-5, atol=1e-5)
    return feats


# -- CAM ---------------------------------------------------------------------------------------
def test_cam_matches_torchcam_tiny():
    model, x = TinyCNN().eval(), tiny_input(4, 32)
    ours = explain(model, x, "cam", TINY_TARGETS, "relu6")
    ref = torchcam_map(CAM, model, "relu6", x, TINY_TARGETS, fc_layer="fc")
    assert_parity(ours.raw_maps, ref, "cam raw vs torchcam [tiny relu6]")
    w = model.fc.weight.detach()[TINY_TARGETS]
    with torch.no_grad():
        a = model.act(model.relu_inplace(model.conv2(model.act(model.conv1(x)))))
        hand = torch.einsum("nk,nkhw->nhw", w, model.relu6(model.conv3(a)))
    assert_parity(ours.raw_maps, hand, "cam raw vs hand [tiny relu6]")
    assert (ours.raw_maps < 0).any()  # CAM is not rectified
    explicit = explain(model, x, "cam", TINY_TARGETS, "relu6", fc_layer="fc")
    assert torch.equal(explicit.raw_maps, ours.raw_maps)
    assert_no_hooks(model)


def test_cam_lite0_head_matches_hand_and_torchcam(lite0, lite0_x):
    ours = explain(lite0, lite0_x, "cam", LITE0_CAM_TARGETS, "_swish@1")
    feats = lite0_head(lite0.model, lite0_x)
    w = lite0.model._fc.weight.detach()[LITE0_CAM_TARGETS]
    hand = torch.einsum("nk,nkhw->nhw", w, feats)
    assert_parity(ours.raw_maps, hand, "cam raw vs hand [lite0 _swish@1]")
    # torchcam hooks the module ``_swish``: it keeps the output of its last call, the head's
    ref = torchcam_map(CAM, lite0.model, "_swish", lite0_x, LITE0_CAM_TARGETS, fc_layer="_fc")
    assert_parity(ours.raw_maps, ref, "cam raw vs torchcam [lite0 _swish (last call)]")
    assert_no_hooks(lite0.model)


class TwoLinearHead(TinyCNN):
    """TinyCNN with a hidden linear layer in its head: fc2(relu(fc(GAP(.))))."""

    def __init__(self) -> None:
        super().__init__(n_classes=16)
        self.fc2 = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(super().forward(x)))


@pytest.mark.parametrize(
    ("model", "layer", "fc"),
    [
        (TinyCNN, "conv3", None),
        (TinyCNN, "conv2", None),
        (TwoLinearHead, "relu6", None),
        (TwoLinearHead, "relu6", "fc"),
    ],
    ids=["tiny-conv3", "tiny-conv2", "two-linear", "two-linear-fc"],
)
def test_cam_refuses_heads_it_does_not_fit(model, layer, fc):
    m = model().eval()
    with pytest.raises(MethodError) as info:
        convscope.explain(m, tiny_input(2, 32), method="cam", layer=layer, fc_layer=fc)
    message = str(info.value)
    assert "\n" not in message
    assert "global average pooling and one linear layer after layer" in message, message
    assert repr(layer) in message and message.endswith("use gradcam"), message
    assert_no_hooks(m)


def test_cam_refuses_what_it_cannot_explain(tiny, tiny_x):
    with pytest.raises(MethodError, match="not an nn.Linear"):
        convscope.explain(tiny, tiny_x, method="cam", layer="relu6", fc_layer="pool")
    with pytest.raises(MethodError, match="score='logit'"):
        convscope.explain(tiny, tiny_x, method="cam", layer="relu6", score="prob")
    with pytest.raises(MethodError, match="a callable"):
        convscope.explain(tiny, tiny_x, method="cam", layer="relu6", target=lambda o: o[:, 0])
    assert_no_hooks(tiny)


# -- Grad-CAM++ --------------------------------------------------------------------------------
@pytest.mark.parametrize(("case", "layer"), CASES, indirect=["case"], ids=IDS)
def test_gradcampp_matches_paper_reference(case, layer):
    model, module, x, targets = case
    ours = explain(model, x, "gradcam++", targets, layer)
    a, g = grads_of(module, layer, x, targets)
    assert_parity(ours.raw_maps, gradcampp_reference(a, g), f"gradcam++ raw vs paper [{layer}]")
    assert_no_hooks(module)


@pytest.mark.skipif(
    __import__("torchcam").__version__ != "0.5.0", reason="documents torchcam 0.5.0 only"
)
def test_torchcam_gradcampp_deviates_from_the_paper():
    """torchcam 0.5.0's GradCAMpp divides a masked *copy* of alpha in place (lost), so its weights
    are sum_ij ReLU(g)^3 (and its documented denominator sums A_ab g_ab^3 over the map instead of
    multiplying g_ij^3 by sum_ab A_ab). It agrees with the paper nowhere, so there is no parity
    test; this pins down what it computes."""
    model, x = TinyCNN().eval(), tiny_input(4, 32)
    a, g = layer_grads(model, "conv3", x, TINY_TARGETS)
    w = g.clamp_min(0).pow(3).sum(dim=(2, 3))
    cubed = torch.relu(torch.einsum("nk,nkhw->nhw", w, a))
    ref = torchcam_map(GradCAMpp, model, "conv3", x, TINY_TARGETS)
    assert_parity(ref, cubed, "torchcam GradCAMpp vs sum ReLU(g)^3 weights")
    ours = explain(model, x, "gradcam++", TINY_TARGETS, "conv3").raw_maps
    assert not torch.allclose(ours / ours.amax(), ref / ref.amax(), atol=1e-2)


# -- XGrad-CAM and LayerCAM vs torchcam --------------------------------------------------------
@pytest.mark.parametrize(("case", "layer"), CASES, indirect=["case"], ids=IDS)
@pytest.mark.parametrize(("method", "cls"), [("xgradcam", XGradCAM), ("layercam", LayerCAM)])
def test_matches_torchcam(case, layer, method, cls):
    model, module, x, targets = case
    ours = explain(model, x, method, targets, layer)
    ref = torchcam_map(cls, module, layer, x, targets)
    assert_parity(ours.raw_maps, ref, f"{method} raw vs torchcam [{layer}]")
    assert_no_hooks(module)


# -- HiResCAM ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("case", "layer"), CASES, indirect=["case"], ids=IDS)
def test_hirescam_matches_paper_loop(case, layer):
    model, module, x, targets = case
    ours = explain(model, x, "hirescam", targets, layer)
    a, g = grads_of(module, layer, x, targets)
    assert_parity(ours.raw_maps, hirescam_reference(a, g), f"hirescam raw vs paper [{layer}]")
    assert_no_hooks(module)


def test_hirescam_is_rectified_cam_over_hw_on_a_gap_head():
    """Draelos & Carin: on a global-average-pooling + linear head HiResCAM is CAM (/ h w)."""
    model, x = TinyCNN().eval(), tiny_input(4, 32)
    hires = explain(model, x, "hirescam", TINY_TARGETS, "relu6").raw_maps
    cam = explain(model, x, "cam", TINY_TARGETS, "relu6").raw_maps
    assert_parity(hires, cam.clamp_min(0) / cam[0].numel(), "hirescam vs ReLU(cam)/hw")


# -- Eigen-CAM ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("case", "layer"), CASES, indirect=["case"], ids=IDS)
def test_eigencam_matches_numpy_svd(case, layer):
    model, module, x, targets = case
    ours = explain(model, x, "eigencam", targets, layer)
    a, _ = grads_of(module, layer, x, targets)
    assert_parity(ours.raw_maps, eigencam_reference(a), f"eigencam raw vs numpy svd [{layer}]")
    assert_no_hooks(module)


def test_eigencam_lite0_head_and_target_independence(lite0, lite0_x):
    x = lite0_x[:2]
    ours = explain(lite0, x, "eigencam", LITE0_CAM_TARGETS[:2], "_swish@1")
    ref = eigencam_reference(lite0_head(lite0.model, x))
    assert_parity(ours.raw_maps, ref, "eigencam raw vs numpy svd [lite0 _swish@1]")
    assert bool((ours.raw_maps >= 0).all())  # non-negative activations: a non-negative map
    other = explain(lite0, x, "eigencam", [1, 2], "_swish@1")
    assert torch.equal(other.raw_maps, ours.raw_maps) and other.targets == [1, 2]


# -- several layers at once --------------------------------------------------------------------
@pytest.mark.parametrize("method", ALL)
def test_two_layers_fuse_the_single_layer_maps(method):
    model, x = TinyCNN().eval(), tiny_input(4, 32)
    # CAM only applies where the GAP + linear head follows: the head's ReLU6 and the pool itself
    layers = ["relu6", "pool"] if method == "cam" else ["conv3", "act@1"]
    both = explain(model, x, method, TINY_TARGETS, layers)
    singles = [explain(model, x, method, TINY_TARGETS, layer).maps for layer in layers]
    assert both.maps.shape == (4, 32, 32)
    assert_parity(both.maps, fused(singles), f"{method} two layers vs fused singles")
    assert torch.equal(both.raw_maps, both.maps)
    # each layer's own raw map is kept beside the fused one
    own = [explain(model, x, method, TINY_TARGETS, layer).raw_maps for layer in layers]
    assert [m.shape for m in both.meta["layer_maps"]] == [m.shape for m in own]
    for got, want in zip(both.meta["layer_maps"], own):
        assert_parity(got, want, f"{method} per-layer raw map")
    assert explain(model, x, method, TINY_TARGETS, layers[0]).meta["layer_maps"] is None
    assert_no_hooks(model)


def test_cam_refuses_a_pair_of_layers_without_a_gap_head():
    model = TinyCNN().eval()
    with pytest.raises(MethodError, match="'conv3'"):
        convscope.explain(model, tiny_input(2, 32), method="cam", layer=["conv3", "act@1"])


def test_weights_are_exposed():
    model, x = TinyCNN().eval(), tiny_input(4, 32)
    for method in ("cam", "gradcam++", "xgradcam"):
        layers = ["relu6"] if method == "cam" else ["conv3", "relu6"]
        out, _ = run_method(method, model, x, TINY_TARGETS, layers)
        assert len(out.maps) == len(out.extras["weights"])
        assert all(w.shape == (4, 16) for w in out.extras["weights"])
