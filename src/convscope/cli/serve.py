"""``convscope serve``: the live explorer (:mod:`convscope.server`) under uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
import sys


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    from convscope.errors import ConvscopeError

    try:
        import uvicorn

        from convscope.server.app import create_app
    except ImportError as e:
        raise ConvscopeError(
            f"convscope serve needs the serve extra: pip install 'convscope[serve]' ({e})"
        ) from None
    from convscope.corpus.mine import load_job_model

    if not 0 <= args.port <= 65535:
        raise ConvscopeError(f"--port must be 0-65535, not {args.port}")
    if not is_loopback(args.host):
        print(
            f"convscope: WARNING: serving on {args.host}, reachable from other machines; the "
            "explorer has no authentication",
            file=sys.stderr,
        )
    app = create_app(load_job_model(args.model), cache_dir=args.cache, site_dir=args.site)
    print(f"convscope explorer on http://{args.host}:{args.port}/", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
