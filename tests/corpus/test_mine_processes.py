"""``convscope mine`` as real processes: a run killed with SIGKILL and started again with the same
command ends bit-identical to an uninterrupted run; two ranks under torchrun (gloo) give the
one-process answer bit for bit; a rank that dies is one clear line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import convscope
from tests.models import slow_tiny_bundle, tiny_bundle

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["conv1", "conv3"]


def mine_cmd(corpus, out, model, *extra):
    cmd = [sys.executable, "-m", "convscope.cli.main", "mine", str(corpus), "--model", model]
    for layer in LAYERS:
        cmd += ["--layer", layer]
    return cmd + ["--out", str(out), "--k", "4", "--batch-size", "2", "--workers", "0", *extra]


def env():
    """This checkout's code (src/) and its tests package, whatever convscope is installed."""
    path = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    return dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1")


def same(a, b):
    for name in LAYERS:
        for key in ("values", "image_indices", "positions"):
            assert torch.equal(getattr(a[name], key), getattr(b[name], key)), (name, key)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 600) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.01)


def reference(folder, model):
    torch.set_num_threads(1)
    try:
        return convscope.top_units(model, folder, LAYERS, k=4, batch_size=2)
    finally:
        torch.set_num_threads(2)


def test_sigkilled_run_resumed_by_the_same_command_is_bit_identical(folder, tmp_path):
    out = tmp_path / "out"
    cmd = mine_cmd(
        folder, out, "tests.models:slow_tiny_bundle", "--resume", "--checkpoint-every", "2"
    )
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    wait_for(out / "mine-checkpoint-rank0.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "topk.json").exists()
    done = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "mined the top 4" in done.stdout
    resumed = convscope.load_top_units(out)
    assert resumed.meta["resumed_at_batch"] > 0  # it continued, it did not start over
    same(resumed, reference(folder, slow_tiny_bundle()))
    assert not (out / "mine-checkpoint-rank0.pt").exists()


def test_two_ranks_give_the_one_process_answer_bit_for_bit(folder, tmp_path):
    (folder / "b/img05.png").write_bytes(b"corrupt")  # skipped on rank 0 or 1, reported once
    out = tmp_path / "out"
    done = subprocess.run(
        mine_cmd(folder, out, "tests.models:tiny_bundle", "--nproc", "2"),
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert "(2 process(es))" in done.stdout and "skipped 1 image(s)" in done.stdout
    two = convscope.load_top_units(out)
    one = reference(folder, tiny_bundle())
    same(two, one)
    assert two.meta["processes"] == 2 and two.meta["images"] == one.meta["images"] == 31
    assert two.meta["skipped_labels"] == ["b/img05.png"]
    assert "b/img05.png" in (out / "mine.log").read_text()


def _rank_pid(root_pid: int, rank: str) -> int | None:
    """The pid of the descendant of ``root_pid`` whose environment says RANK=rank."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    todo = list(children.get(root_pid, []))
    while todo:
        pid = todo.pop()
        try:
            environ = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ and b"CONVSCOPE_LAUNCHED=1" in environ:
            return pid
        todo += children.get(pid, [])
    return None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_a_rank_that_dies_is_one_clear_error(folder, tmp_path):
    out = tmp_path / "out"
    cmd = mine_cmd(
        folder,
        out,
        "tests.models:slow_tiny_bundle",
        "--nproc",
        "2",
        "--resume",
        "--checkpoint-every",
        "1",
    )
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for(out / "mine-checkpoint-rank1.pt", proc)
    pid = _rank_pid(proc.pid, "1")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 2
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("convscope: error: rank 1 of 2 was killed by SIGKILL")
    assert "--resume" in last and "torchrun.log" in last
    assert not (out / "topk.json").exists()
    assert (out / "mine-checkpoint-rank0.pt").exists()  # kept for --resume


def test_two_ranks_fill_one_feature_cache_like_one_process(folder, tmp_path):
    import numpy as np

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += [str(ROOT / "tests/corpus/dist_features.py"), str(folder), str(tmp_path / "two")]
    done = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    torch.set_num_threads(1)
    try:
        two = convscope.features(tiny_bundle(), folder, "conv3", cache_dir=tmp_path / "two")
        one = convscope.features(
            tiny_bundle(), folder, "conv3", cache_dir=tmp_path / "one", batch_size=2
        )
    finally:
        torch.set_num_threads(2)
    assert two.meta["images"] == 32 and two.meta["key"] == one.meta["key"]
    assert np.array_equal(np.asarray(two.array), np.asarray(one.array))
    assert np.array_equal(np.asarray(two.top1), np.asarray(one.top1))
