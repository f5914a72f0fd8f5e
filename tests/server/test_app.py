"""The explorer's JSON API with FastAPI's TestClient: each route against the Python API, and the
abuse cases (oversized, truncated, non-image and bomb uploads, path traversal, a full job queue)
answered with 4xx while the server stays healthy."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import convscope
from tests.models import tiny_bundle

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from convscope.server.app import Limits, create_app  # noqa: E402


def _png(seed: int = 0, size=(30, 28)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _bomb(width: int, height: int) -> bytes:
    """A valid PNG header claiming ``width`` x ``height`` pixels, with a tiny compressed body of
    zeros (the decompression-bomb shape: small file, huge image)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\0" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from convscope.report.site import build_site

    root = tmp_path_factory.mktemp("serve")
    corpus = root / "corpus"
    corpus.mkdir()
    for i in range(6):
        (corpus / f"{i}.png").write_bytes(_png(10 + i))
    bundle = tiny_bundle()
    build_site(
        bundle,
        root / "site",
        corpus=corpus,
        layers=["relu6"],
        k=3,
        methods=(),
        images=0,
        featurevis_steps=0,
        embedding_method="pca",
        cache_dir=root / "fcache",
        stats_images=0,
        progress=False,
    )
    limits = Limits(max_upload_bytes=200_000, max_pixels=1_000_000, max_jobs=2, max_steps=32)
    app = create_app(bundle, cache_dir=root / "cache", site_dir=root / "site", limits=limits)
    with TestClient(app) as c:
        c.bundle = bundle
        c.root = root
        yield c


def _upload(client, data: bytes, kind: str = "image/png"):
    return client.post("/api/images", content=data, headers={"Content-Type": kind})


def test_info_and_page(client):
    info = client.get("/api/info").json()
    assert info["model"] == "tiny" and "gradcam" in info["methods"]
    assert info["layers"] == ["act@0", "relu6", "conv3"] and info["default_layer"] == "conv3"
    page = client.get("/")
    assert page.status_code == 200 and "convscope explorer" in page.text
    assert client.get("/openapi.json").json()["paths"]["/api/images/{image_id}/map"]


def test_predictions_and_maps_equal_the_python_api(client, tmp_path):
    data = _png(1)
    r = _upload(client, data)
    assert r.status_code == 201
    image_id = r.json()["id"]
    assert _upload(client, data).json()["id"] == image_id  # same pixels, same id
    picture = Image.open(io.BytesIO(data))
    ref = convscope.explain(client.bundle, picture, "gradcam")
    preds = client.get(f"/api/images/{image_id}/predictions").json()["predictions"]
    expected = ref.top_predictions(5)[0]
    assert [p["index"] for p in preds] == [i for i, _, _ in expected]
    np.testing.assert_allclose([p["probability"] for p in preds], [p for _, _, p in expected])
    # the map: the Python API's, for each method and layer asked
    for method, layer in (("gradcam", "auto"), ("gradcam", "act@1"), ("saliency", "auto")):
        e = client.get(
            f"/api/images/{image_id}/explain", params={"method": method, "layer": layer}
        ).json()
        ref = convscope.explain(client.bundle, picture, method, layer=layer)
        m = ref.maps[0].detach().float()
        assert e["target"] == ref.target_names[0]
        assert e["max"] == pytest.approx(float(m.max()), rel=1e-5)
        png = client.get(f"/api/images/{image_id}/map", params={"method": method, "layer": layer})
        assert png.headers["content-type"] == "image/png"
        got = np.asarray(Image.open(io.BytesIO(png.content)))
        assert np.array_equal(got, np.asarray(ref.overlay(0)))
    # a class by index changes the target
    e = client.get(f"/api/images/{image_id}/explain", params={"target": "2"}).json()
    assert e["target"] == convscope.explain(client.bundle, picture, target=2).target_names[0]


def test_activations_at_a_position(client):
    data = _png(2)
    image_id = _upload(client, data).json()["id"]
    a = client.get(
        f"/api/images/{image_id}/activations", params={"layer": "relu6", "x": 0.9, "y": 0.1}
    ).json()
    acts = convscope.activations(client.bundle, [Image.open(io.BytesIO(data))], ["relu6"])
    maps = acts.maps["relu6"][0]
    c, h, w = maps.shape
    i, j = int(0.1 * h), int(0.9 * w)
    assert a["position"] == [i, j] and a["shape"] == [c, h, w]
    column = maps[:, i, j]
    best = column.topk(8)
    assert [u["unit"] for u in a["top"]] == [f"relu6:{int(k)}" for k in best.indices]
    np.testing.assert_allclose([u["value"] for u in a["top"]], best.values.numpy(), rtol=1e-6)


def test_featurevis_job_with_progress(client):
    import time

    r = client.post("/api/units/relu6:3/featurevis", params={"steps": 6, "size": 24})
    assert r.status_code == 202
    job = r.json()
    for _ in range(400):
        job = client.get(f"/api/jobs/{job['id']}").json()
        if job["state"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert job["state"] == "done" and job["step"] == 6
    png = client.get(job["image"])
    ref = convscope.visualize(client.bundle, "channel:relu6:3", steps=6, size=24)
    got = np.asarray(Image.open(io.BytesIO(png.content))).astype(np.float32)
    want = np.asarray(ref.image(0)).astype(np.float32)
    assert got.shape == want.shape and np.abs(got - want).max() <= 1
    assert client.post("/api/units/relu6/featurevis").status_code == 422  # no channel
    assert client.post("/api/units/relu6:1/featurevis", params={"steps": 999}).status_code == 422
    assert client.get("/api/jobs/nope").status_code == 404


def test_full_job_queue_is_refused(client):
    ex = client.app.state.explorer
    with ex.lock:  # the worker cannot start: the queue fills
        codes = [
            client.post(
                "/api/units/relu6:1/featurevis", params={"steps": 1, "size": 16}
            ).status_code
            for _ in range(4)
        ]
    assert 429 in codes and codes.count(202) <= 3


def test_top_patches_from_the_site(client):
    top = client.get("/api/units/relu6:4/top").json()
    ref = convscope.load_top_units(client.root / "site/data/topk/relu6")["relu6"]
    assert top["images"] == ref.image_indices[4].tolist()
    card = client.get(top["card"])
    assert card.status_code == 200 and Image.open(io.BytesIO(card.content)).format == "WEBP"
    assert client.get("/api/units/nope:1/top").status_code == 422


@pytest.mark.parametrize(
    "data, kind, status",
    [
        (b"x" * 300_000, "image/png", 413),  # over the upload limit
        (b"not an image at all", "image/png", 422),
        (_png(3)[:200], "image/png", 422),  # truncated
        (_png(3), "text/plain", 415),  # not declared as an image
        (_png(3), "", 415),
        (_bomb(20_000, 20_000), "image/png", 413),  # 400 M pixels in a few hundred bytes
        (_bomb(3_000, 3_000), "image/png", 413),  # over the server's limit, under Pillow's
        (b"", "image/png", 422),
    ],
    ids=["oversized", "garbage", "truncated", "text", "no-type", "bomb", "bomb-9M", "empty"],
)
def test_bad_uploads_are_refused_and_the_server_stays_healthy(client, data, kind, status):
    r = _upload(client, data, kind)
    assert r.status_code == status and r.json()["error"]
    assert _upload(client, _png(4)).status_code == 201


def test_gif_declared_as_png_and_tiff_are_refused(client):
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "TIFF")
    assert _upload(client, buf.getvalue()).status_code == 415


@pytest.mark.parametrize(
    "path",
    [
        "/site/../site.json",
        "/site/%2e%2e/%2e%2e/etc/passwd",
        "/site/..%2F..%2Fetc%2Fpasswd",
        "/site//etc/passwd",
        "/site/assets/../../cache/images",
        "/site/%2Fetc%2Fpasswd",
        "/site/nope.html",
    ],
)
def test_path_traversal_is_refused(client, path):
    r = client.get(path)
    assert r.status_code == 404
    assert "root:" not in r.text


def test_ids_and_names_are_not_paths(client):
    for bad in ("../../etc/passwd", "%2e%2e%2fetc", "0" * 31 + "/", "a" * 32):
        assert client.get(f"/api/images/{bad}/predictions").status_code == 404
    assert client.post("/api/samples/..%2F..%2Fetc").status_code == 404
    assert client.get("/site/index.html").status_code == 200
    files = {p.relative_to(client.root) for p in client.root.rglob("*") if p.is_file()}
    outside = [p for p in files if p.parts[0] not in ("corpus", "site", "fcache", "cache")]
    assert not outside


def test_bad_parameters_are_json_errors(client):
    image_id = _upload(client, _png(5)).json()["id"]
    r = client.get(f"/api/images/{image_id}/map", params={"method": "nope"})
    assert r.status_code == 422 and "nope" in r.json()["error"]
    r = client.get(f"/api/images/{image_id}/map", params={"layer": "nope"})
    assert r.status_code == 422 and r.json()["error"]
    r = client.get(f"/api/images/{image_id}/activations", params={"layer": "relu6", "x": 2})
    assert r.status_code == 422
    r = client.get(f"/api/images/{image_id}/explain", params={"target": "class that is not"})
    assert r.status_code == 422


def test_model_is_untouched_by_the_server(client):
    from convscope.core.guard import fingerprints_equal, model_fingerprint

    model = client.bundle.model
    before = model_fingerprint(model)
    image_id = _upload(client, _png(6)).json()["id"]
    client.get(f"/api/images/{image_id}/map", params={"method": "guided_backprop"})
    client.get(f"/api/images/{image_id}/activations", params={"layer": "act@0"})
    client.get(f"/api/images/{image_id}/map", params={"layer": "nope"})
    assert fingerprints_equal(before, model_fingerprint(model))
