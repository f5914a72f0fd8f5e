"""``convscope demo``: build the demo page."""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from convscope.fileio import write_all
    from convscope.report.demo import build_demo

    page = build_demo(args.model)
    write_all(args.out, page.files())
    print(Path(args.out).resolve() / "index.html")
    return 0
