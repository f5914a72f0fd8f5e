"""Run under torchrun by test_mine_processes: each rank computes its share of the feature cache."""

from __future__ import annotations

import sys

import torch.distributed as dist

import convscope
from tests.models import tiny_bundle

if __name__ == "__main__":
    folder, cache = sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo")
    f = convscope.features(tiny_bundle(), folder, "conv3", cache_dir=cache, batch_size=2)
    dist.barrier()
    dist.destroy_process_group()
