"""The streaming top-k against a brute-force reference written from its definition, with many
ties (integer activations), and its invariance to batching and splitting."""

from __future__ import annotations

import pytest
import torch

from convscope.corpus.topk import TopK
from convscope.errors import ConvscopeError


def reference(acts: torch.Tensor, indices: list[int], k: int, reduce: str):
    """For each channel: every image's (score, global index, first argmax) sorted by score
    descending then index ascending, cut at k; plain Python loops."""
    n, c, h, w = acts.shape
    out = []
    for ch in range(c):
        rows = []
        for i in range(n):
            m = acts[i, ch]
            score = float(m.max()) if reduce == "max" else float(m.mean())
            flat = m.flatten().tolist()
            first = flat.index(max(flat))
            rows.append((score, indices[i], (first // w, first % w)))
        rows.sort(key=lambda r: (-r[0], r[1]))
        out.append(rows[:k])
    return out


def check(top: TopK, ref) -> None:
    pos = top.positions()
    for ch, rows in enumerate(ref):
        assert top.values[ch].tolist() == pytest.approx([r[0] for r in rows])
        assert top.indices[ch].tolist() == [r[1] for r in rows]
        assert [tuple(p) for p in pos[ch].tolist()] == [r[2] for r in rows]


@pytest.mark.parametrize("reduce", ["max", "mean"])
def test_matches_the_definition_with_ties_in_any_batching(reduce):
    g = torch.Generator().manual_seed(0)
    acts = torch.randint(0, 4, (37, 5, 3, 4), generator=g).float()  # many equal scores
    order = torch.randperm(37, generator=g)
    indices = (order * 3 + 100).tolist()  # global indices not in arrival order
    ref = reference(acts, indices, 6, reduce)
    for batch in (1, 5, 37):
        top = TopK(5, 6, 4, reduce)
        for s in range(0, 37, batch):
            top.update(acts[s : s + batch], torch.tensor(indices[s : s + batch]))
        check(top, ref)
    assert top.filled() == 6


def test_merge_of_partial_lists_is_exact():
    g = torch.Generator().manual_seed(1)
    acts = torch.randint(0, 3, (40, 4, 2, 2), generator=g).float()
    idx = torch.arange(40)
    whole = TopK(4, 9, 2)
    whole.update(acts, idx)
    merged = TopK(4, 9, 2)
    for part in (slice(0, 8), slice(8, 9), slice(9, 40)):  # uneven shards, one of one image
        p = TopK(4, 9, 2)
        p.update(acts[part], idx[part])
        merged.merge(p)
    for key in ("values", "indices", "where"):
        assert torch.equal(getattr(whole, key), getattr(merged, key))


def test_fewer_images_than_k_leaves_empty_slots_last():
    top = TopK(2, 5, 3)
    top.update(torch.zeros(3, 2, 2, 3), torch.tensor([4, 2, 9]))
    assert top.filled() == 3
    assert top.indices[0, :3].tolist() == [2, 4, 9]  # equal scores: by index
    assert top.values[0, 3:].tolist() == [float("-inf")] * 2


def test_non_finite_activations_are_an_error_naming_the_images():
    top = TopK(1, 2, 1)
    a = torch.zeros(3, 1, 1, 1)
    a[1] = float("nan")
    with pytest.raises(ConvscopeError, match=r"not finite .* \[11\]"):
        top.update(a, torch.tensor([10, 11, 12]))
