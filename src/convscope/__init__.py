"""convscope: see what a convolutional network sees.

The public API, imported lazily so that ``convscope --help`` starts without loading torch::

    import convscope
    bundle = convscope.load_model("efficientnet_lite0")
    result = convscope.explain(bundle, "sample:coffee", method="gradcam")
    result.save("out/")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "explain": "convscope.api",
    "compare": "convscope.api",
    "methods": "convscope.core.registry",
    "method_info": "convscope.core.registry",
    "load_model": "convscope.models",
    "list_models": "convscope.models",
    "ModelBundle": "convscope.core.bundle",
    "Explanation": "convscope.result",
    "list_layers": "convscope.core.layer_listing",
    "resolve_layer": "convscope.core.layers",
    "auto_layer": "convscope.core.layer_listing",
    "Recorder": "convscope.core.recorder",
    "Unit": "convscope.core.units",
    "parse_unit": "convscope.core.units",
    "load_image": "convscope.data.images",
    "load_images": "convscope.data.images",
    "samples": "convscope.data.samples",
    "ConvscopeError": "convscope.errors",
    "ImageError": "convscope.errors",
    "ModelError": "convscope.errors",
    "LayerError": "convscope.errors",
    "TargetError": "convscope.errors",
    "MethodError": "convscope.errors",
    "tune_cpu_allocator": "convscope.core.allocator",
    "activations": "convscope.inside.activations",
    "Activations": "convscope.inside.activations",
    "filters": "convscope.inside.filters",
    "Filters": "convscope.inside.filters",
    "layer_stats": "convscope.inside.stats",
    "LayerStats": "convscope.inside.stats",
    "top_units": "convscope.corpus.mining",
    "load_top_units": "convscope.corpus.mining",
    "TopUnits": "convscope.corpus.mining",
    "features": "convscope.corpus.features",
    "neighbours": "convscope.corpus.neighbours",
    "embedding": "convscope.corpus.embedding",
    "embedding_map": "convscope.corpus.embedding",
    "receptive_field": "convscope.inside.receptive_field",
    "receptive_fields": "convscope.inside.receptive_field",
    "ReceptiveField": "convscope.inside.receptive_field",
    "effective_receptive_field": "convscope.inside.erf",
    "EffectiveReceptiveField": "convscope.inside.erf",
    "weight_templates": "convscope.inside.templates",
    "WeightTemplates": "convscope.inside.templates",
    "train_model": "convscope.train.trainer",
    "attribution_vs_truth": "convscope.metrics.truth",
    "filter_structure": "convscope.metrics.filters",
    "visualize": "convscope.featurevis.api",
    "Visualization": "convscope.featurevis.result",
}

# subpackages reachable as attributes (``convscope.corpus.open(...)``) without importing them first
_SUBPACKAGES = {"corpus"}

__all__ = sorted(_EXPORTS) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from convscope.api import compare, explain
    from convscope.core.allocator import tune_cpu_allocator
    from convscope.core.bundle import ModelBundle
    from convscope.core.layer_listing import auto_layer, list_layers
    from convscope.core.layers import resolve_layer
    from convscope.core.recorder import Recorder
    from convscope.core.registry import method_info, methods
    from convscope.core.units import Unit, parse_unit
    from convscope.corpus.embedding import embedding, embedding_map
    from convscope.corpus.features import features
    from convscope.corpus.mining import TopUnits, load_top_units, top_units
    from convscope.corpus.neighbours import neighbours
    from convscope.data.images import load_image, load_images
    from convscope.data.samples import samples
    from convscope.errors import (
        ConvscopeError,
        ImageError,
        LayerError,
        MethodError,
        ModelError,
        TargetError,
    )
    from convscope.featurevis.api import visualize
    from convscope.featurevis.result import Visualization
    from convscope.inside.activations import Activations, activations
    from convscope.inside.erf import EffectiveReceptiveField, effective_receptive_field
    from convscope.inside.filters import Filters, filters
    from convscope.inside.receptive_field import (
        ReceptiveField,
        receptive_field,
        receptive_fields,
    )
    from convscope.inside.stats import LayerStats, layer_stats
    from convscope.inside.templates import WeightTemplates, weight_templates
    from convscope.metrics.filters import filter_structure
    from convscope.metrics.truth import attribution_vs_truth
    from convscope.models import list_models, load_model
    from convscope.result import Explanation
    from convscope.train.trainer import train_model


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"convscope.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'convscope' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
