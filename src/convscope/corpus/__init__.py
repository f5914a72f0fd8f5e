"""Dataset level (capability C5): corpora, streaming top-k mining, feature caches, nearest
neighbours and 2-D embedding maps, resumable and distributed with torch.distributed.

``convscope.corpus.open(spec)`` makes a :class:`Corpus`; ``convscope.top_units`` mines it.
"""

from __future__ import annotations

from convscope.corpus.sources import (
    Corpus,
    CorpusError,
    DatasetCorpus,
    FolderCorpus,
    PathsCorpus,
    SampleCrops,
    SamplesCorpus,
    open,
)

__all__ = [
    "Corpus",
    "CorpusError",
    "DatasetCorpus",
    "FolderCorpus",
    "PathsCorpus",
    "SampleCrops",
    "SamplesCorpus",
    "open",
]
