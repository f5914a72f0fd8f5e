"""Map arithmetic (core.maps): display scaling."""

from __future__ import annotations

import pytest
import torch

from convscope.core.maps import normalize_maps


def test_normalize_max_minmax_p99():
    maps = torch.tensor([[[1.0, 2.0], [4.0, -8.0]], [[0.0, 0.0], [0.0, 0.0]]])
    torch.testing.assert_close(normalize_maps(maps, "max")[0], maps[0] / 8)
    assert torch.equal(normalize_maps(maps, "max")[1], maps[1])  # all-zero stays zero
    torch.testing.assert_close(normalize_maps(maps, "minmax")[0], (maps[0] + 8) / 12)
    big = torch.arange(1, 201, dtype=torch.float32).view(1, 10, 20)
    q = torch.quantile(big.flatten(), 0.99)
    out = normalize_maps(big, "p99")
    torch.testing.assert_close(out, (big / q).clamp(max=1))
    with pytest.raises(ValueError, match="unknown normalization"):
        normalize_maps(maps, "median")
