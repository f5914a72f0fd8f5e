"""Dataset level (capability C5): corpora, streaming top-k mining, feature caches, nearest
neighbours and 2-D embedding maps, resumable and distributed with torch.distributed.

``convscope.corpus.open(spec)`` makes a :class:`Corpus`; ``convscope.top_units`` mines it. Names are
imported lazily, so ``convscope --help`` (which reads ``convscope.corpus.mine``'s arguments) does
not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Corpus",
    "CorpusError",
    "DatasetCorpus",
    "FolderCorpus",
    "PathsCorpus",
    "SampleCrops",
    "SamplesCorpus",
    "ShapesCorpus",
    "open",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        value = getattr(importlib.import_module("convscope.corpus.sources"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'convscope.corpus' has no attribute {name!r}")
