"""The CPU allocator setting (core.allocator) and where it is applied."""

from __future__ import annotations

import platform
import sys

import pytest
import torch

import convscope.core.allocator as allocator
from convscope.cli.main import main

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_tuning_takes_effect_on_glibc_and_memory_still_works():
    assert allocator.tune_cpu_allocator() is True
    assert allocator.tune_cpu_allocator() is True  # idempotent
    big = torch.ones(64 << 20, dtype=torch.uint8)  # 64 MiB: a block glibc would otherwise mmap
    assert int(big.sum()) == 64 << 20
    del big


def test_the_command_line_tunes_unless_told_not_to(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(allocator, "tune_cpu_allocator", lambda: calls.append(1) or True)
    assert main(["methods"]) == 0
    assert calls == [1]
    monkeypatch.setenv("CONVSCOPE_TUNE_MALLOC", "0")
    assert main(["methods"]) == 0
    assert calls == [1]
    assert "gradcam" in capsys.readouterr().out


def test_no_tuning_without_glibc(monkeypatch):
    monkeypatch.setattr(allocator, "_done", None)
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.tune_cpu_allocator() is False
