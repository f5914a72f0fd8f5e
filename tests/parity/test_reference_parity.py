"""Parity with independent reference implementations (captum, torchcam, and Grad-CAM by hand).

Parity: convscope's map equals the reference map elementwise to within
``1e-5 * max|reference map|`` (per image), on a TinyCNN (batch 4, 3x32x32) and on the bundled
EfficientNet-Lite0 (batch 4 real photos, 224x224), with a different target for every image.

Every reference runs on its own ``copy.deepcopy`` of the model in eval mode, so no hook a reference
might leave behind (torchcam keeps its hooks until ``remove_hooks``) can reach the model convscope
explains; the tests also check that the models convscope used end up with no hooks at all.

Upsampling: captum's ``LayerAttribution.interpolate(attr, (H, W), "bilinear")`` is
``F.interpolate(attr, (H, W), mode="bilinear")`` whose default ``align_corners`` is False, the
same as convscope's, so captum's own interpolate is the reference here.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import LayerAttribution, LayerGradCam, Saliency
from torch import nn
from torchcam.methods import GradCAM

import convscope
from convscope.errors import LayerError
from tests.helpers import LITE0_TARGETS
from tests.models import TinyCNN, tiny_input
from tests.reference import PHOTOS, assert_no_hooks, assert_parity, photos, reference_copy

TINY_TARGETS = [0, 3, 1, 4]

# (model key, layer): layers the model calls exactly once per forward pass (captum and torchcam
# hook a module, not one call of it).
CAM_CASES = [("tiny", "conv3"), ("tiny", "relu6"), ("lite0", "_blocks.15"), ("lite0", "_bn1")]


# -- helpers -----------------------------------------------------------------------------------


def captum_saliency(model: nn.Module, x: torch.Tensor, targets: list[int]) -> torch.Tensor:
    attr = Saliency(reference_copy(model)).attribute(x.clone(), target=targets, abs=True)
    return attr.amax(dim=1)


def captum_gradcam(
    model: nn.Module, layer: str, x: torch.Tensor, targets: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(layer-resolution map (N, h, w), map upsampled to the input (N, H, W)) from captum."""
    ref = reference_copy(model)
    module = dict(ref.named_modules())[layer]
    attr = LayerGradCam(ref, module).attribute(x.clone(), target=targets, relu_attributions=True)
    up = LayerAttribution.interpolate(attr, tuple(x.shape[-2:]), "bilinear")
    return attr[:, 0], up[:, 0]


def torchcam_gradcam(
    model: nn.Module, layer: str, x: torch.Tensor, targets: list[int]
) -> torch.Tensor:
    """torchcam's un-normalized Grad-CAM (N, h, w) at ``layer``; hooks removed on exit."""
    ref = reference_copy(model)
    with GradCAM(ref, target_layer=layer) as extractor:
        scores = ref(x.clone())
        (cam,) = extractor(class_idx=list(targets), scores=scores, normalized=False)
    assert_no_hooks(ref)
    return cam


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture
def case(request, device):
    """(model passed to convscope, the nn.Module, input batch, targets) for a model key, on the
    parity tests' device (``--device`` / ``$CONVSCOPE_TEST_DEVICE``; the CPU by default)."""
    if request.param == "tiny":
        model = TinyCNN().eval().to(device)
        return model, model, tiny_input(4, 32).to(device), TINY_TARGETS
    bundle, x = request.getfixturevalue("lite0_on_device")
    assert not bundle.model.training
    return bundle, bundle.model, x, LITE0_TARGETS


# -- 1. saliency vs captum ---------------------------------------------------------------------
@pytest.mark.parametrize("case", ["tiny", "lite0"], indirect=True)
def test_saliency_matches_captum(case):
    model, module, x, targets = case
    ours = convscope.explain(model, x, method="saliency", target=targets)
    assert ours.targets == targets
    ref = captum_saliency(module, x, targets)
    assert_parity(ours.maps, ref, f"saliency vs captum [{type(module).__name__}]")
    assert_parity(ours.raw_maps, ref, f"saliency raw vs captum [{type(module).__name__}]")
    assert_no_hooks(module)


# -- 2. Grad-CAM vs captum LayerGradCam --------------------------------------------------------
@pytest.mark.parametrize(
    ("case", "layer"), CAM_CASES, indirect=["case"], ids=[f"{m}-{lay}" for m, lay in CAM_CASES]
)
def test_gradcam_matches_captum(case, layer):
    model, module, x, targets = case
    ours = convscope.explain(model, x, method="gradcam", target=targets, layer=layer)
    assert ours.targets == targets and ours.layer == layer
    raw_ref, up_ref = captum_gradcam(module, layer, x, targets)
    assert_parity(ours.raw_maps, raw_ref, f"gradcam raw vs captum [{layer}]")
    assert_parity(ours.maps, up_ref, f"gradcam upsampled vs captum [{layer}]")
    assert_no_hooks(module)


# -- 3. Grad-CAM vs torchcam GradCAM -----------------------------------------------------------
@pytest.mark.parametrize(
    ("case", "layer"), CAM_CASES, indirect=["case"], ids=[f"{m}-{lay}" for m, lay in CAM_CASES]
)
def test_gradcam_matches_torchcam(case, layer):
    model, module, x, targets = case
    ours = convscope.explain(model, x, method="gradcam", target=targets, layer=layer)
    ref = torchcam_gradcam(module, layer, x, targets)
    assert_parity(ours.raw_maps, ref, f"gradcam raw vs torchcam [{layer}]")
    up = F.interpolate(ref[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)
    assert_parity(ours.maps, up[:, 0], f"gradcam upsampled vs torchcam [{layer}]")
    assert_no_hooks(module)


# -- 4. a reused module, addressed per call: Grad-CAM by hand ----------------------------------
def hand_gradcam_tiny(
    model: TinyCNN, x: torch.Tensor, targets: list[int], call: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM (Selvaraju et al. 2017) at call ``call`` of ``model.act``, written out by hand.

    Returns (layer-resolution map, map bilinearly upsampled to the input) and checks that the
    pieces run by hand reproduce the model's output.
    """
    m = copy.deepcopy(model).eval()
    with torch.enable_grad():
        a0 = m.act(m.conv1(x))  # act, call 0
        a1 = m.act(m.relu_inplace(m.conv2(a0)))  # act, call 1
        out = m.fc(m.pool(m.relu6(m.conv3(a1))).flatten(1))
        a = a0 if call == 0 else a1
        score = out.gather(1, torch.tensor(targets)[:, None]).sum()
        (g,) = torch.autograd.grad(score, a)
    torch.testing.assert_close(out, model(x), rtol=0, atol=0)
    alpha = g.mean(dim=(2, 3))  # (N, K): spatial mean of dS/dA_k
    cam = torch.relu((alpha[:, :, None, None] * a).sum(dim=1)).detach()
    up = F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)
    return cam, up[:, 0]


@pytest.mark.parametrize("call", [0, 1])
def test_gradcam_reused_module_per_call_matches_hand(call):
    model = TinyCNN().eval()
    x = tiny_input(4, 32)
    ours = convscope.explain(model, x, method="gradcam", target=TINY_TARGETS, layer=f"act@{call}")
    raw, up = hand_gradcam_tiny(model, x, TINY_TARGETS, call)
    assert tuple(raw.shape[-2:]) == ((32, 32) if call == 0 else (16, 16))
    assert_parity(ours.raw_maps, raw, f"gradcam raw vs hand [act@{call}]")
    assert_parity(ours.maps, up, f"gradcam upsampled vs hand [act@{call}]")
    assert_no_hooks(model)


def test_gradcam_reused_module_without_call_is_ambiguous():
    model = TinyCNN().eval()
    with pytest.raises(LayerError) as info:
        convscope.explain(model, tiny_input(4, 32), method="gradcam", layer="act")
    message = str(info.value)
    assert "act@0" in message and "act@1" in message, message
    assert_no_hooks(model)


# -- 5. saliency on Lite0 through the public image path ----------------------------------------
def test_saliency_lite0_from_images_matches_captum(lite0, tmp_path):
    pils = photos()
    paths = []
    for name, im in zip(PHOTOS[:2], pils[:2]):
        path = tmp_path / f"{name}.png"  # lossless, so the file decodes to the same pixels
        im.save(path)
        paths.append(str(path))
    images = [*paths, *pils[2:]]
    ours = convscope.explain(lite0, images, method="saliency", target=LITE0_TARGETS)
    assert ours.targets == LITE0_TARGETS
    assert ours.labels[:2] == ["coffee", "chelsea"]
    x = lite0.prepare(pils)[0]
    assert torch.equal(ours.pixels, lite0.prepare(pils)[1])
    ref = captum_saliency(lite0.model, x, LITE0_TARGETS)
    assert_parity(ours.maps, ref, "saliency from images vs captum [Lite0]")
    assert_no_hooks(lite0.model)
    assert np.isfinite(ours.maps.numpy()).all()
