"""Launching a corpus job on N local processes with torchrun, and turning its failure into one line.

``convscope mine --nproc N`` runs ``python -m torch.distributed.run --standalone
--nproc_per_node=N -m convscope.corpus.mine ARGS``: torchrun (no home-made scheduler) starts the
ranks, watches them and stops them all when one fails. Its output is shown as it comes (rank 0's
progress bar) and copied to ``<out>/torchrun.log``; when a rank fails, the error is the rank's own
``convscope: error`` line if it printed one, else torchrun's root cause (rank, exit code, signal).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from convscope.errors import ConvscopeError

__all__ = ["RankFailure", "launch", "summarize_failure"]


class RankFailure(ConvscopeError):
    """A rank of a torchrun job failed (the message says which, and why)."""


def launch(module: str, args: Sequence[str], nproc: int, log_path: str | os.PathLike) -> None:
    """Run ``python -m module ARGS`` on ``nproc`` ranks under torchrun; raise RankFailure if any
    rank fails."""
    if nproc < 1:
        raise ConvscopeError(f"--nproc must be at least 1, not {nproc}")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        module,
        *args,
    ]
    env = dict(os.environ, CONVSCOPE_LAUNCHED="1")
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    chunks: list[bytes] = []
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        try:
            assert proc.stdout is not None
            while True:
                data = os.read(proc.stdout.fileno(), 65536)
                if not data:
                    break
                chunks.append(data)
                log.write(data)
                sys.stderr.buffer.write(data)
                sys.stderr.flush()
            code = proc.wait()
        except BaseException:
            proc.send_signal(signal.SIGTERM)
            proc.wait()
            raise
    if code != 0:
        text = b"".join(chunks).decode("utf-8", "replace")
        raise RankFailure(summarize_failure(text, nproc, code) + f"; torchrun's output: {log_path}")


_RANK_ERROR = re.compile(r"convscope: error \(rank (\d+)\): (.*)")
_ROOT_RANK = re.compile(r"Root Cause.*?rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)", re.S)


def summarize_failure(text: str, nproc: int, code: int) -> str:
    """One line for a failed torchrun run from its output."""
    own = _RANK_ERROR.search(text)
    if own:
        return f"rank {own.group(1)} of {nproc} failed: {own.group(2).strip()}"
    root = _ROOT_RANK.search(text)
    if root:
        rank, exitcode = int(root.group(1)), int(root.group(2))
        if exitcode < 0:
            try:
                how = f"was killed by {signal.Signals(-exitcode).name}"
            except ValueError:
                how = f"was killed by signal {-exitcode}"
        else:
            how = f"exited with code {exitcode}"
        return (
            f"rank {rank} of {nproc} {how}; torchrun stopped the others "
            "(run the same command with --resume to continue from the last checkpoints)"
        )
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    last = lines[-1] if lines else "no output"
    return f"torchrun failed with exit code {code}: {last}"
