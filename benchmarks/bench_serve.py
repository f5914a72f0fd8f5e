"""Load on the explorer (``convscope serve``): 50 concurrent clients issuing explain requests to a
real uvicorn on a loopback port, against the same requests made one after another.

The server runs EfficientNet-Lite0 in this process (uvicorn in a thread); each phase starts with
a fresh cache folder, so every distinct map is computed once in each phase and the others wait on
the model's lock or hit the cache. It checks that no request fails and that every map (its raw
values' SHA-256, from ``/explain``, and the PNG from ``/map``) is the same as in the sequential
phase; it prints the p50/p95 latency of each phase and the throughput.

    python benchmarks/bench_serve.py [--clients 50] [--requests 4]
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

IMAGES = ("coffee", "chelsea", "astronaut", "rocket")
METHODS = ("gradcam", "saliency", "layercam")
LAYERS = ("auto", "_blocks.10")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(bundle, cache: str):
    import uvicorn

    from convscope.server.app import create_app

    port = _free_port()
    srv = uvicorn.Server(
        uvicorn.Config(
            create_app(bundle, cache_dir=cache),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            limit_concurrency=200,
            backlog=256,
        )
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    return srv, thread, f"http://127.0.0.1:{port}"


def _request(client, url: str, ids: dict, combo) -> tuple[float, int, str, bytes]:
    image, method, layer = combo
    params = {"method": method, "layer": layer}
    t = time.perf_counter()
    e = client.get(f"{url}/api/images/{ids[image]}/explain", params=params)
    m = client.get(f"{url}/api/images/{ids[image]}/map", params=params)
    took = time.perf_counter() - t
    status = max(e.status_code, m.status_code)
    digest = e.json().get("map_digest", "") if e.status_code == 200 else ""
    return took, status, digest, m.content


def _phase(bundle, combos, clients: int):
    import httpx

    with tempfile.TemporaryDirectory() as cache:
        srv, thread, url = _serve(bundle, cache)
        try:
            with httpx.Client(timeout=600) as c:
                ids = {s: c.post(f"{url}/api/samples/{s}").json()["id"] for s in IMAGES}
            start = time.perf_counter()
            if clients <= 1:
                with httpx.Client(timeout=600) as c:
                    results = [_request(c, url, ids, combo) for combo in combos]
            else:
                per = [combos[i::clients] for i in range(clients)]

                def client_run(mine):
                    with httpx.Client(timeout=600) as c:
                        return [_request(c, url, ids, combo) for combo in mine]

                with ThreadPoolExecutor(clients) as pool:
                    parts = list(pool.map(client_run, per))
                results = [None] * len(combos)
                for i, part in enumerate(parts):
                    for j, r in enumerate(part):
                        results[i + j * clients] = r
            wall = time.perf_counter() - start
        finally:
            srv.should_exit = True
            thread.join(30)
    return results, wall


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--requests", type=int, default=4, help="requests per client")
    args = p.parse_args()
    import torch

    import convscope

    torch.manual_seed(0)
    bundle = convscope.load_model("efficientnet_lite0")
    distinct = [(i, m, lay) for i in IMAGES for m in METHODS for lay in LAYERS]
    rng = random.Random(0)
    combos = [rng.choice(distinct) for _ in range(args.clients * args.requests)]
    seq, seq_wall = _phase(bundle, distinct, 1)
    reference = {combo: (r[2], r[3]) for combo, r in zip(distinct, seq)}
    conc, conc_wall = _phase(bundle, combos, args.clients)
    errors = sum(1 for r in conc if r[1] != 200) + sum(1 for r in seq if r[1] != 200)
    same = sum(1 for combo, r in zip(combos, conc) if (r[2], r[3]) == reference[combo])

    def pct(values, q):
        values = sorted(values)
        return values[min(len(values) - 1, int(q * len(values)))]

    s_lat = [r[0] for r in seq]
    c_lat = [r[0] for r in conc]
    print(
        f"torch threads {torch.get_num_threads()}, {len(distinct)} distinct maps "
        f"({len(IMAGES)} photos x {METHODS} x {LAYERS})"
    )
    print("| phase | requests | errors | same maps as sequential | p50 (s) | p95 (s) | wall (s) |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| sequential, 1 client | {len(seq)} | {sum(r[1] != 200 for r in seq)} | - | "
        f"{statistics.median(s_lat):.3f} | {pct(s_lat, 0.95):.3f} | {seq_wall:.1f} |"
    )
    print(
        f"| {args.clients} concurrent clients | {len(conc)} | "
        f"{sum(r[1] != 200 for r in conc)} | {same}/{len(conc)} | "
        f"{statistics.median(c_lat):.3f} | {pct(c_lat, 0.95):.3f} | {conc_wall:.1f} |"
    )
    if errors or same != len(conc):
        raise SystemExit("FAILED: errors or maps that differ from the sequential ones")


if __name__ == "__main__":
    main()
