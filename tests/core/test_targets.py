from __future__ import annotations

import re
import warnings

import pytest
import torch

from convscope.core.targets import match_class_name, resolve_class_name, resolve_targets
from convscope.errors import ConvscopeWarning, TargetError
from convscope.models import imagenet_class_names

NAMES = ["tabby, tabby cat", "tiger cat", "Egyptian cat", "espresso", "cup", "crane", "crane"]


def test_exact_synonym_prefix_and_fuzzy_names():
    assert resolve_class_name("tabby cat", NAMES) == 0  # a synonym
    assert resolve_class_name("TIGER_CAT", NAMES) == 1  # case, underscores
    with pytest.warns(ConvscopeWarning, match="'espr' taken as class 3 'espresso'.*begins"):
        assert resolve_class_name("espr", NAMES) == 3  # unambiguous prefix
    with pytest.warns(ConvscopeWarning, match="'expresso' taken as class 3 'espresso'.*closest"):
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


def test_exact_names_resolve_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_class_name("tabby cat", NAMES) == 0
        assert resolve_class_name("Siamese", imagenet_class_names()) == 284


def test_a_word_is_never_matched_inside_another_word():
    """'dog' is the start of 'dogsled' but no class is called 'dog': the breeds are offered."""
    names = imagenet_class_names()
    with pytest.raises(TargetError, match="'dog' is ambiguous") as err:
        resolve_class_name("dog", names)
    listed = [int(i) for i in re.findall(r"(\d+): ", str(err.value))]
    assert listed[:3] == [153, 200, 230]  # Maltese dog, Tibetan terrier (chrysanthemum dog), ...
    assert 537 not in listed  # dogsled: 'dog' is not the head of 'dog sled'
    # whole words beat a prefix in a toy list too
    with pytest.raises(
        TargetError,
        match=r"ambiguous, it matches 1: hot dog; 2: sheep dog; 0: dogsled \(dog sled\)",
    ):
        resolve_class_name("dog", ["dogsled, dog sled", "hot dog", "sheep dog"])
    assert match_class_name("dog", ["dogsled", "hot dog"]).index == 1
    assert match_class_name("dog", ["dogsled", "hot dog"]).how == "word"


def test_cat_offers_the_cats_first():
    names = imagenet_class_names()
    with pytest.raises(TargetError, match="'cat' is ambiguous") as err:
        resolve_class_name("cat", names)
    listed = [int(i) for i in re.findall(r"(\d+): ", str(err.value))]
    assert listed[:5] == [281, 282, 283, 284, 285]  # tabby, tiger, Persian, Siamese, Egyptian
    for far in (286, 287, 484, 688):  # cougar, lynx (catamount), catamaran, oscilloscope
        assert far not in listed
    assert "281: tabby (tabby cat)" in str(err.value)  # the synonym that matched is shown


def test_a_word_match_is_announced():
    with pytest.warns(ConvscopeWarning, match="'Persian' taken as class 283 'Persian cat'"):
        assert resolve_class_name("Persian", imagenet_class_names()) == 283
    m = match_class_name("sled", imagenet_class_names())
    assert (m.index, m.synonym, m.how) == (537, "dog sled", "word")


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
