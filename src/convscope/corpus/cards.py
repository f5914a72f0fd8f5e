"""Unit cards from a top-k result: the patch of each top image that the unit's neuron sees, the
top images with the unit's activation map overlaid, and a grid of cards per layer.

Patches are cut on demand from the image as the model saw it (after the bundle's resize and crop)
with the receptive-field boxes of the result (from :func:`convscope.receptive_field`), so nothing
but the result has to be stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from convscope.corpus.mining import LayerTopK, TopUnits
from convscope.corpus.patches import crop
from convscope.corpus.sources import Corpus
from convscope.errors import ConvscopeError

__all__ = ["activation_maps", "guided_patches", "layer_cards", "unit_card", "unit_patches"]


def _layer(top: TopUnits | LayerTopK, layer: str | None) -> LayerTopK:
    if isinstance(top, LayerTopK):
        return top
    return top[layer] if layer is not None else top._only()


def unit_patches(
    top: TopUnits | LayerTopK, channel: int, corpus: Corpus, bundle: Any, layer: str | None = None
) -> list[np.ndarray]:
    """The receptive-field patches (h, w, 3) uint8 of ``channel``'s top images, best first."""
    lt = _layer(top, layer)
    if lt.boxes is None:
        raise ConvscopeError(
            f"the result has no receptive-field boxes for {lt.layer} (convscope.receptive_field "
            "could not compute them), so no patches can be cut"
        )
    if not 0 <= channel < lt.values.shape[0]:
        raise ConvscopeError(f"channel {channel} is out of range (0-{lt.values.shape[0] - 1})")
    return [
        crop(corpus.pixels(int(i), bundle), lt.boxes[channel, r].tolist())
        for r, i in enumerate(lt.image_indices[channel].tolist())
    ]


def guided_patches(
    top: TopUnits | LayerTopK, channel: int, corpus: Corpus, bundle: Any, layer: str | None = None
) -> list[np.ndarray]:
    """Guided backpropagation (Springenberg et al. 2015, Fig. 3) of the unit's neuron at each
    hit's position, cropped to the same box as the patch: the RGB reconstruction shown as
    ``0.5 + 0.5 * g / max|g|`` over the crop (grey is zero)."""
    import convscope

    lt = _layer(top, layer)
    if lt.boxes is None:
        raise ConvscopeError(f"the result has no receptive-field boxes for {lt.layer}")
    indices = lt.image_indices[channel].tolist()
    items = [corpus.load(i) for i in indices]
    x = (
        torch.stack(items).to(bundle.device)
        if all(isinstance(t, torch.Tensor) for t in items)
        else bundle.prepare(items)[0]
    )
    out = []
    for r in range(len(indices)):
        # one neuron (its own position) per image: one call each
        res = convscope.explain(
            bundle, x[r : r + 1], method="guided_backprop", target=lt.neuron(channel, r)
        )
        g = res.attributions[0].detach().float().cpu()
        top_, left, bottom, right = lt.boxes[channel, r].tolist()
        crop_ = g[:, top_:bottom, left:right]
        scale = crop_.abs().amax().clamp_min(1e-12)
        rgb = (0.5 + 0.5 * crop_ / scale).clamp(0, 1)
        rgb = rgb[:3] if rgb.shape[0] >= 3 else rgb[:1].expand(3, -1, -1)
        out.append((rgb * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())
    return out


def unit_card(
    top: TopUnits | LayerTopK,
    channel: int,
    corpus: Corpus,
    bundle: Any,
    *,
    layer: str | None = None,
    size: int = 64,
    guided: bool = False,
) -> Image.Image:
    """A card of the unit's k patches with their activations (Zeiler & Fergus, Fig. 2); with
    ``guided``, the guided backpropagation of each hit beside its patch."""
    from convscope.viz.corpus import unit_card as render_card

    lt = _layer(top, layer)
    patches = unit_patches(lt, channel, corpus, bundle)
    beside = guided_patches(lt, channel, corpus, bundle) if guided else None
    return render_card(
        patches, lt.values[channel].tolist(), lt.unit(channel), beside=beside, size=size
    )


def layer_cards(
    top: TopUnits | LayerTopK,
    corpus: Corpus,
    bundle: Any,
    channels: Sequence[int] | None = None,
    *,
    layer: str | None = None,
    size: int = 48,
    per_row: int = 4,
    guided: bool = False,
) -> Image.Image:
    """A grid of unit cards for ``channels`` (default: every channel) of one layer."""
    from convscope.viz.corpus import layer_grid

    lt = _layer(top, layer)
    chosen = range(lt.values.shape[0]) if channels is None else channels
    cards = [unit_card(lt, c, corpus, bundle, size=size, guided=guided) for c in chosen]
    return layer_grid(cards, per_row=per_row)


def activation_maps(
    top: TopUnits | LayerTopK,
    channel: int,
    corpus: Corpus,
    bundle: Any,
    *,
    layer: str | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
) -> list[Image.Image]:
    """The unit's top images (as the model saw them) with its activation map overlaid: the map
    is upsampled bilinearly to the input size and divided by the map's maximum over the k images
    (one scale for the card: the best activation is the top of the colour map; negative values
    are shown as 0)."""
    from convscope.core.guard import preserved
    from convscope.core.recorder import Recorder
    from convscope.viz.render import overlay, to_pil

    lt = _layer(top, layer)
    indices = lt.image_indices[channel].tolist()
    pixels = [corpus.pixels(i, bundle) for i in indices]
    items = [corpus.load(i) for i in indices]
    if all(isinstance(t, torch.Tensor) for t in items):
        x = torch.stack(items).to(bundle.device)
    else:
        x, _ = bundle.prepare(items)
    with preserved(bundle.model), torch.inference_mode(), Recorder(bundle.model, [lt.layer]) as rec:
        bundle.model(x)
        maps = rec.activation(lt.layer)[:, channel].float()
    h, w = pixels[0].shape[:2]
    up = torch.nn.functional.interpolate(
        maps[:, None], size=(h, w), mode="bilinear", align_corners=False
    )[:, 0]
    up = (up / maps.amax().clamp_min(1e-12)).clamp(0, 1).cpu()
    return [
        to_pil(overlay(torch.from_numpy(np.array(p)), m, cmap=cmap, alpha=alpha))
        for p, m in zip(pixels, up)
    ]
