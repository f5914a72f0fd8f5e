"""``convscope visualize``: images that maximize classes, channels or neurons (one PNG each)."""

from __future__ import annotations

import argparse
import ast
from typing import Any


def parse_channels(text: str) -> list[int]:
    """``"0-31"``, ``"3,5,9"`` or ``"0-3,8"`` -> channel indices."""
    from convscope.errors import ConvscopeError

    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, dash, hi = part.partition("-")
        try:
            if dash:
                a, b = int(lo), int(hi)
                if b < a:
                    raise ValueError
                out.extend(range(a, b + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ConvscopeError(
                f"--channels {text!r}: write ranges and indices like 0-31 or 3,5,9"
            ) from None
    if any(c < 0 for c in out):
        raise ConvscopeError(f"--channels {text!r}: channels start at 0")
    return list(dict.fromkeys(out))


def parse_option(item: str) -> tuple[str, Any]:
    from convscope.errors import ConvscopeError

    key, eq, text = item.partition("=")
    if not eq or not key.strip():
        raise ConvscopeError(f"--option {item!r} is not KEY=VALUE")
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        value = text.strip()
    return key.strip(), value


def run(args: argparse.Namespace) -> int:
    import convscope
    from convscope.errors import ConvscopeError
    from convscope.fileio import write_all
    from convscope.viz.render import png_bytes

    objectives: list[Any] = list(args.objective or [])
    if args.channels is not None and args.layer is None:
        raise ConvscopeError("--channels needs --layer")
    if args.layer is not None:
        if args.channels is None:
            raise ConvscopeError("--layer needs --channels (e.g. --channels 0-31)")
        objectives += [f"channel:{args.layer}:{c}" for c in parse_channels(args.channels)]
    if not objectives:
        raise ConvscopeError("give at least one --objective, or --layer with --channels")
    options = dict(parse_option(o) for o in args.option or [])
    result = convscope.visualize(
        args.model,
        objectives,
        steps=args.steps,
        preset=None if args.preset == "none" else args.preset,
        size=args.size,
        batch=args.batch,
        seed=args.seed,
        progress=True,
        **options,
    )
    files = result.files()
    if len(result) > 1:
        files["grid.png"] = png_bytes(result.grid())
    written = write_all(args.out, files)
    preds = result.top_predictions(1)
    for i, label in enumerate(result.labels):
        top = f"; top-1 {preds[i][0][1]} ({preds[i][0][2]:.1%})" if preds[i] else ""
        print(f"{label}: {result.objectives[i]} = {float(result.values[i]):.4g}{top}")
    for path in written:
        print(f"wrote {path}")
    return 0
