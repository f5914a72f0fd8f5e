"""C6: the project's own models and their training (``convscope train``): see
:mod:`convscope.train.trainer` (recipes, strategies, checkpoints)."""
