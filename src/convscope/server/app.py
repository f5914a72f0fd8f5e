"""The live explorer: a FastAPI app over the Python API (``convscope serve``).

The app holds no method code: predictions and maps come from :func:`convscope.explain`,
activations from :func:`convscope.activations`, feature visualizations from
:func:`convscope.visualize`, top patches from a site's cached top-k (:mod:`convscope.report.site`).

Safety, for a server that may be reached by other programs on the machine:

- uploads: at most ``max_upload_bytes`` (413), a declared image content type (415), the image's
  size read from its header and refused above ``max_pixels`` before any pixel is decoded
  (decompression bombs, 413), a full decode (truncated or non-image data: 422), and a decoded
  format that is one of PNG, JPEG, WebP, GIF, BMP (415);
- files: every route that serves a file takes an id (a hex digest) or a layer and channel checked
  against the model, never a path; the site's files are served only below the site folder
  (``..``, encoded, and absolute paths: 404);
- work: one lock serializes the model's work across concurrent requests (a request that waits
  longer than ``request_timeout`` s gets 503); feature visualizations run one at a time in a
  background worker with a bounded queue (429 when full) and a time limit;
- errors are JSON ``{"error": ...}`` with a 4xx status for the caller's mistakes;
- files are written only below ``cache_dir`` (uploaded images re-encoded as PNG, and maps).
"""

import hashlib
import io
import json
import os
import queue
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

from convscope.errors import ConvscopeError

__all__ = ["Limits", "create_app"]

FORMATS = {"PNG", "JPEG", "WEBP", "GIF", "BMP"}
CONTENT_TYPES = {"image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp"}


class Limits:
    """The server's limits (defaults in brackets): upload bytes [10 MB], image pixels [25 M],
    seconds a request waits for the model [30], pending feature-visualization jobs [4], seconds a
    job may run [120], steps and size of a job [128 steps, 224 px], maps kept in memory [256]."""

    def __init__(
        self,
        max_upload_bytes: int = 10_000_000,
        max_pixels: int = 25_000_000,
        request_timeout: float = 30.0,
        max_jobs: int = 4,
        job_timeout: float = 120.0,
        max_steps: int = 128,
        max_size: int = 224,
        memory_maps: int = 256,
    ) -> None:
        self.max_upload_bytes = max_upload_bytes
        self.max_pixels = max_pixels
        self.request_timeout = request_timeout
        self.max_jobs = max_jobs
        self.job_timeout = job_timeout
        self.max_steps = max_steps
        self.max_size = max_size
        self.memory_maps = memory_maps


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Explorer:
    """The state behind the routes: the model, its lock, the caches and the job worker."""

    def __init__(self, model: Any, cache_dir: Path, site_dir: Path | None, limits: Limits) -> None:
        import convscope
        from convscope.core.layer_listing import auto_layer
        from convscope.core.layers import resolve_layer
        from convscope.inside.activations import pipeline_layers
        from convscope.report.site import _example

        self.bundle = convscope.load_model(model)
        self.limits = limits
        self.cache = cache_dir
        (cache_dir / "images").mkdir(parents=True, exist_ok=True)
        (cache_dir / "maps").mkdir(parents=True, exist_ok=True)
        self.site = site_dir.resolve() if site_dir is not None else None
        self.lock = threading.Lock()
        example = _example(self.bundle)
        self.layers = pipeline_layers(self.bundle.model, example)
        try:  # what layer="auto" means for explain: the bundle's default, else auto_layer
            own = self.bundle.default_layer
            self.default_layer = (
                resolve_layer(self.bundle.model, own).spec
                if own
                else auto_layer(self.bundle.model, example).spec
            )
        except ConvscopeError:
            self.default_layer = self.layers[-1]
        if self.default_layer not in self.layers:
            self.layers.append(self.default_layer)
        self.results: OrderedDict[str, Any] = OrderedDict()
        self.memo_lock = threading.Lock()  # the results and jobs dicts, across request threads
        self.jobs: dict[str, dict[str, Any]] = {}
        self.queue: queue.Queue = queue.Queue(maxsize=limits.max_jobs)
        self.worker = threading.Thread(target=self._work, daemon=True, name="convscope-jobs")
        self.worker.start()

    # -- the model, one caller at a time ---------------------------------------------------------
    def locked(self):
        explorer = self

        class _Hold:
            def __enter__(self):
                if not explorer.lock.acquire(timeout=explorer.limits.request_timeout):
                    raise _HTTPError(503, "the model is busy; try again")

            def __exit__(self, *exc):
                explorer.lock.release()

        return _Hold()

    # -- images ----------------------------------------------------------------------------------
    def add_image(self, data: bytes, content_type: str) -> dict[str, Any]:
        from PIL import Image

        kind = content_type.split(";")[0].strip().lower()
        if kind not in CONTENT_TYPES:
            raise _HTTPError(
                415,
                f"content type {kind or 'none'!r} is not an image type "
                f"({', '.join(sorted(CONTENT_TYPES))})",
            )
        if len(data) > self.limits.max_upload_bytes:
            raise _HTTPError(413, f"upload over {self.limits.max_upload_bytes} bytes")
        if not data:
            raise _HTTPError(422, "empty upload")
        try:
            with Image.open(io.BytesIO(data)) as im:
                fmt = im.format
                w, h = im.size
                if w * h > self.limits.max_pixels:
                    raise _HTTPError(
                        413,
                        f"image of {w} x {h} pixels is over the limit of "
                        f"{self.limits.max_pixels} pixels",
                    )
                if fmt not in FORMATS:
                    raise _HTTPError(415, f"image format {fmt} is not accepted")
                im.load()
                rgb = im.convert("RGB")
        except _HTTPError:
            raise
        except Image.DecompressionBombError:
            raise _HTTPError(413, "image over Pillow's decompression-bomb limit") from None
        except Exception as e:  # PIL raises many kinds for broken data
            raise _HTTPError(422, f"not a decodable image: {type(e).__name__}") from None
        buf = io.BytesIO()
        rgb.save(buf, "PNG")
        png = buf.getvalue()
        digest = hashlib.sha256(png).hexdigest()[:32]
        path = self.cache / "images" / f"{digest}.png"
        if not path.exists():
            from convscope.fileio import write_all

            write_all(self.cache / "images", {f"{digest}.png": png})
        return {"id": digest, "width": rgb.width, "height": rgb.height}

    def image(self, image_id: str):
        from PIL import Image

        if len(image_id) != 32 or any(ch not in "0123456789abcdef" for ch in image_id):
            raise _HTTPError(404, "no such image")
        path = self.cache / "images" / f"{image_id}.png"
        if not path.is_file():
            raise _HTTPError(404, "no such image")
        with Image.open(path) as im:
            return im.convert("RGB")

    # -- maps and predictions --------------------------------------------------------------------
    def explanation(self, image_id: str, method: str, target: str, layer: str) -> Any:
        import convscope

        key = json.dumps([image_id, method, target, layer])
        found = self._recall(key)
        if found is not None:
            return found
        picture = self.image(image_id)
        target_arg: Any = int(target) if target.isdigit() else target
        with self.locked():
            found = self._recall(key)  # computed while this request waited for the model
            if found is not None:
                return found
            try:
                r = convscope.explain(
                    self.bundle, picture, method=method, target=target_arg, layer=layer
                )
            except ConvscopeError as e:
                raise _HTTPError(422, str(e)) from None
            self._remember(key, r)
        return r

    def _recall(self, key: str) -> Any:
        with self.memo_lock:
            if key in self.results:
                self.results.move_to_end(key)
                return self.results[key]
        return None

    def _remember(self, key: str, value: Any) -> None:
        with self.memo_lock:
            self.results[key] = value
            while len(self.results) > self.limits.memory_maps:
                self.results.popitem(last=False)

    def map_png(self, image_id: str, method: str, target: str, layer: str) -> bytes:
        key = hashlib.sha256(json.dumps([image_id, method, target, layer]).encode()).hexdigest()
        path = self.cache / "maps" / f"{key[:32]}.png"
        if path.is_file():
            return path.read_bytes()
        r = self.explanation(image_id, method, target, layer)
        from convscope.viz.render import png_bytes

        data = png_bytes(r.overlay(0))
        from convscope.fileio import write_all

        write_all(self.cache / "maps", {path.name: data})
        return data

    def activations_at(self, image_id: str, layer: str, x: float, y: float, top: int) -> dict:
        import convscope

        picture = self.image(image_id)
        key = json.dumps([image_id, "activations", layer])
        acts = self._recall(key)
        if acts is None:
            with self.locked():
                try:
                    acts = convscope.activations(self.bundle, [picture], [layer])
                except ConvscopeError as e:
                    raise _HTTPError(422, str(e)) from None
            self._remember(key, acts)
        name = acts.layers[0]
        maps = acts.maps[name][0]  # (C, h, w)
        c, h, w = maps.shape
        i = min(h - 1, max(0, int(y * h)))
        j = min(w - 1, max(0, int(x * w)))
        column = maps[:, i, j].float()
        k = max(1, min(top, c))
        values, idx = column.topk(k)
        return {
            "layer": name,
            "position": [i, j],
            "shape": [c, h, w],
            "top": [{"unit": f"{name}:{int(u)}", "value": float(v)} for v, u in zip(values, idx)],
        }

    # -- feature visualization jobs --------------------------------------------------------------
    def submit(self, unit: str, steps: int, size: int) -> dict[str, Any]:
        from convscope.core.units import parse_unit

        if not 1 <= steps <= self.limits.max_steps:
            raise _HTTPError(422, f"steps must be 1-{self.limits.max_steps}")
        if not 8 <= size <= self.limits.max_size:
            raise _HTTPError(422, f"size must be 8-{self.limits.max_size}")
        try:
            u = parse_unit(unit)
        except ConvscopeError as e:
            raise _HTTPError(422, str(e)) from None
        if u.channel is None:
            raise _HTTPError(422, f"{unit}: name a channel, LAYER:K")
        objective = f"channel:{u.spec}" if u.position is None else f"neuron:{u.spec}"
        job_id = uuid.uuid4().hex
        job = {"id": job_id, "unit": u.spec, "state": "queued", "step": 0, "steps": steps}
        with self.memo_lock:  # known before the worker can take it
            self.jobs[job_id] = job
            finished = [k for k, j in self.jobs.items() if j["state"] in ("done", "failed")]
            for old in finished[: max(0, len(finished) - 64)]:  # keep the last 64 results
                del self.jobs[old]
        try:
            self.queue.put_nowait((job_id, objective, steps, size))
        except queue.Full:
            with self.memo_lock:
                del self.jobs[job_id]
            raise _HTTPError(429, "too many feature visualizations pending; try later") from None
        return dict(job)

    def _work(self) -> None:
        import convscope

        while True:
            job_id, objective, steps, size = self.queue.get()
            with self.memo_lock:
                job = self.jobs[job_id]
            job["state"] = "running"
            start = time.monotonic()

            def report(step: int, total: int, job=job, start=start) -> None:
                job["step"] = step
                if time.monotonic() - start > self.limits.job_timeout:
                    raise TimeoutError(f"over the {self.limits.job_timeout} s limit")

            try:
                with self.lock:
                    r = convscope.visualize(
                        self.bundle, objective, steps=steps, size=size, progress=report
                    )
                from convscope.viz.render import png_bytes

                done = {"png": png_bytes(r.image(0)), "value": float(r.values[0]), "state": "done"}
            except Exception as e:  # a job's failure is its state, not the worker's end
                done = {"state": "failed", "error": " ".join(str(e).split()) or type(e).__name__}
            with self.memo_lock:
                job.update(done)
            self.queue.task_done()

    # -- a site's files ----------------------------------------------------------------------------
    def site_file(self, rel: str) -> Path:
        if self.site is None:
            raise _HTTPError(404, "no site folder given (convscope serve --site DIR)")
        if "\\" in rel or rel.startswith("/") or any(p in ("..", "") for p in rel.split("/")):
            raise _HTTPError(404, "no such file")
        path = (self.site / rel).resolve()
        if not path.is_relative_to(self.site) or not path.is_file():
            raise _HTTPError(404, "no such file")
        return path

    def unit_top(self, unit: str) -> dict[str, Any]:
        from convscope.core.layers import resolve_layer
        from convscope.core.units import parse_unit
        from convscope.corpus.mining import load_top_units
        from convscope.report.site import layer_slug

        try:
            u = parse_unit(unit)
            layer = resolve_layer(self.bundle.model, u.layer).spec
        except ConvscopeError as e:
            raise _HTTPError(422, str(e)) from None
        if self.site is None:
            raise _HTTPError(404, "no site folder given (convscope serve --site DIR)")
        folder = self.site / "data" / "topk" / layer_slug(layer)
        if not (folder / "topk.json").is_file():
            raise _HTTPError(404, f"the site has no top-k of {layer}")
        lt = load_top_units(folder)[layer]
        if u.channel is None or not 0 <= u.channel < lt.values.shape[0]:
            raise _HTTPError(422, f"{unit}: pick a channel 0-{lt.values.shape[0] - 1}")
        ch = u.channel
        card = f"assets/units/{layer_slug(layer)}/{ch}_card.webp"
        return {
            "unit": f"{layer}:{ch}",
            "values": lt.values[ch].tolist(),
            "images": lt.image_indices[ch].tolist(),
            "card": f"/site/{card}" if (self.site / card).is_file() else None,
        }


def create_app(
    model: Any = "efficientnet_lite0",
    *,
    cache_dir: str | os.PathLike | None = None,
    site_dir: str | os.PathLike | None = None,
    limits: Limits | None = None,
):
    """The FastAPI app of the explorer for ``model`` (a name, module or bundle). ``cache_dir``:
    where uploads and maps are kept (default ``$CONVSCOPE_CACHE/serve`` or
    ``~/.cache/convscope/serve``); ``site_dir``: a folder made by ``convscope site`` for the
    units' top patches."""
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    import convscope
    from convscope.server.page import PAGE

    if cache_dir is None:
        root = os.environ.get("CONVSCOPE_CACHE") or Path.home() / ".cache" / "convscope"
        cache_dir = Path(root) / "serve"
    ex = _Explorer(
        model, Path(cache_dir), None if site_dir is None else Path(site_dir), limits or Limits()
    )
    app = FastAPI(
        title="convscope explorer",
        version=convscope.__version__,
        description="What a convolutional network sees: maps, predictions, activations, units.",
    )
    app.state.explorer = ex

    @app.exception_handler(_HTTPError)
    async def _http_error(request: Request, exc: _HTTPError):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(ConvscopeError)
    async def _convscope_error(request: Request, exc: ConvscopeError):
        return JSONResponse({"error": " ".join(str(exc).split())}, status_code=422)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index():
        return HTMLResponse(PAGE)

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        """The model, its methods and layers, and the server's limits."""
        from convscope.data.samples import samples

        return {
            "model": ex.bundle.name,
            "methods": convscope.methods(),
            "layers": ex.layers,
            "default_layer": ex.default_layer,
            "samples": sorted(samples()),
            "site": ex.site is not None,
            "limits": vars(ex.limits),
        }

    @app.post("/api/images")
    async def upload(request: Request):
        """Upload an image as the raw request body with its image content type."""
        declared = request.headers.get("content-length")
        if (
            declared is not None
            and declared.isdigit()
            and int(declared) > ex.limits.max_upload_bytes
        ):
            raise _HTTPError(413, f"upload over {ex.limits.max_upload_bytes} bytes")
        kind = request.headers.get("content-type", "")
        if kind.split(";")[0].strip().lower() not in CONTENT_TYPES:
            raise _HTTPError(415, f"content type {kind or 'none'!r} is not an image type")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > ex.limits.max_upload_bytes:
                raise _HTTPError(413, f"upload over {ex.limits.max_upload_bytes} bytes")
        from starlette.concurrency import run_in_threadpool

        return JSONResponse(await run_in_threadpool(ex.add_image, bytes(body), kind), 201)

    @app.post("/api/samples/{name}")
    def pick_sample(name: str):
        """Use one of the sample photos (``/api/info`` lists them)."""
        from convscope.data.samples import samples

        if name not in samples():
            raise _HTTPError(404, f"no sample named {name!r}")
        from convscope.data.images import load_image

        im = load_image(f"sample:{name}")
        buf = io.BytesIO()
        im.convert("RGB").save(buf, "PNG")
        return JSONResponse(ex.add_image(buf.getvalue(), "image/png"), 201)

    @app.get("/api/images/{image_id}/predictions")
    def predictions(image_id: str, k: int = 5) -> dict[str, Any]:
        """The top-k classes with their softmax probabilities."""
        r = ex.explanation(image_id, "gradcam", "top1", "auto")
        k = max(1, min(k, 20))
        return {
            "predictions": [
                {"index": i, "name": n, "probability": p} for i, n, p in r.top_predictions(k)[0]
            ]
        }

    @app.get("/api/images/{image_id}/map")
    def explain_map(
        image_id: str, method: str = "gradcam", target: str = "top1", layer: str = "auto"
    ):
        """The method's map for the target at the layer, over the image (PNG)."""
        if method not in convscope.methods():
            raise _HTTPError(422, f"unknown method {method!r}")
        data = ex.map_png(image_id, method, target, layer)
        return Response(data, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/images/{image_id}/explain")
    def explain_json(
        image_id: str, method: str = "gradcam", target: str = "top1", layer: str = "auto"
    ) -> dict[str, Any]:
        """What the map explains: the target class, the layer, and the map's raw range."""
        if method not in convscope.methods():
            raise _HTTPError(422, f"unknown method {method!r}")
        r = ex.explanation(image_id, method, target, layer)
        m = r.maps[0]
        return {
            "method": method,
            "target": r.target_names[0],
            "layer": r.layer,
            "min": float(m.min()),
            "max": float(m.max()),
            "map_digest": hashlib.sha256(m.detach().float().cpu().numpy().tobytes()).hexdigest(),
        }

    @app.get("/api/images/{image_id}/activations")
    def activations(
        image_id: str, layer: str, x: float = 0.5, y: float = 0.5, top: int = 8
    ) -> dict[str, Any]:
        """The strongest channels of ``layer`` at the position (x, y), as fractions of the
        image's width and height."""
        if not (0 <= x <= 1 and 0 <= y <= 1):
            raise _HTTPError(422, "x and y are fractions of the image, 0-1")
        return ex.activations_at(image_id, layer, x, y, max(1, min(top, 64)))

    @app.post("/api/units/{unit}/featurevis", status_code=202)
    def featurevis(unit: str, steps: int = 64, size: int = 128) -> dict[str, Any]:
        """Start a feature visualization of the unit in the background; poll ``/api/jobs/ID``."""
        return ex.submit(unit, steps, size)

    @app.get("/api/jobs/{job_id}")
    def job(job_id: str) -> dict[str, Any]:
        """A job's state (queued, running, done, failed) and progress (step of steps)."""
        with ex.memo_lock:
            j = ex.jobs.get(job_id)
            out = None if j is None else {k: v for k, v in j.items() if k != "png"}
        if out is None:
            raise _HTTPError(404, "no such job")
        if out["state"] == "done":
            out["image"] = f"/api/jobs/{job_id}/image"
        return out

    @app.get("/api/jobs/{job_id}/image")
    def job_image(job_id: str):
        with ex.memo_lock:
            j = ex.jobs.get(job_id)
        if j is None or j.get("state") != "done":
            raise _HTTPError(404, "no finished job with this id")
        return Response(j["png"], media_type="image/png")

    @app.get("/api/units/{unit}/top")
    def unit_top(unit: str) -> dict[str, Any]:
        """The unit's top images and values from the site's cache (``--site``)."""
        return ex.unit_top(unit)

    @app.get("/site/{rel:path}", include_in_schema=False)
    def site_file(rel: str):
        from fastapi.responses import FileResponse

        return FileResponse(ex.site_file(rel))

    return app
