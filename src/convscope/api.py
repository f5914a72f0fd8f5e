"""The front door: :func:`explain` (one method) and :func:`compare` (several), and
:func:`prepare_inputs` (images to the model's input).

They are defined in :mod:`convscope.runner` and :mod:`convscope.data.inputs`; this module only
gathers them. Library code imports those modules, never this one: the front door sits above
everything but the report, the server and the CLI (see ``.importlinter``).
"""

from __future__ import annotations

from convscope.data.inputs import prepare_inputs
from convscope.runner import compare, explain, split_batch_size

__all__ = ["compare", "explain", "prepare_inputs", "split_batch_size"]
