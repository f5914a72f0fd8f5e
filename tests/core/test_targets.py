from __future__ import annotations

import pytest
import torch

from convscope.core.targets import resolve_class_name, resolve_targets
from convscope.errors import TargetError
from convscope.models import imagenet_class_names

NAMES = ["tabby, tabby cat", "tiger cat", "Egyptian cat", "espresso", "cup", "crane", "crane"]


def test_exact_synonym_prefix_and_fuzzy_names():
    assert resolve_class_name("tabby cat", NAMES) == 0  # a synonym
    assert resolve_class_name("TIGER_CAT", NAMES) == 1  # case, underscores
    assert resolve_class_name("espr", NAMES) == 3  # unambiguous prefix
    assert resolve_class_name("expresso", NAMES) == 3  # fuzzy


def test_ambiguous_and_unknown_names_list_candidates():
    with pytest.raises(TargetError, match=r"ambiguous.*5: crane.*6: crane"):
        resolve_class_name("crane", NAMES)
    with pytest.raises(TargetError, match=r"ambiguous.*tabby.*tiger cat|ambiguous.*tiger cat"):
        resolve_class_name("t", NAMES)
    with pytest.raises(TargetError, match="unknown class 'zebra'"):
        resolve_class_name("zebra", NAMES)


def test_imagenet_names_resolve():
    names = imagenet_class_names()
    assert len(names) == 1000
    assert resolve_class_name("espresso", names) == 967
    assert resolve_class_name("tabby", names) == 281
    assert resolve_class_name("golden retriever", names) == 207


def test_top_k_index_list_and_range():
    out = torch.tensor([[0.1, 3.0, 2.0], [5.0, -1.0, 0.0]])
    t = resolve_targets("top2", 2, ["a", "b", "c"])
    torch.testing.assert_close(t.scores(out), torch.tensor([2.0, 0.0]))
    assert t.indices.tolist() == [2, 2]
    t = resolve_targets([2, "a"], 2, ["a", "b", "c"])
    torch.testing.assert_close(t.scores(out), torch.tensor([2.0, 5.0]))
    with pytest.raises(TargetError, match="out of range.*3 classes"):
        resolve_targets(3, 2, ["a", "b", "c"])
    with pytest.raises(TargetError, match="out of range"):
        resolve_targets(7, 2).scores(out)  # no names known: checked against the output
    with pytest.raises(TargetError, match="3 targets given for 2 images"):
        resolve_targets([0, 1, 2], 2, ["a", "b", "c"])
    with pytest.raises(TargetError, match="indices start at 0"):
        resolve_targets(-1, 1)


def test_name_target_without_class_names_is_an_error():
    with pytest.raises(TargetError, match="no class names"):
        resolve_targets("espresso", 1, None)


def test_callable_must_return_one_score_per_image():
    t = resolve_targets(lambda out: out.sum(), 2)
    with pytest.raises(TargetError, match=r"shape \(2,\)"):
        t.scores(torch.zeros(2, 3))
