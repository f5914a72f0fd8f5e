"""Tests for convscope.data.images: exact conversions and one-line errors for bad input."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convscope.data.images import image_label, load_image, load_images
from convscope.errors import ImageError


def px(im: Image.Image) -> np.ndarray:
    """The pixels of an RGB image as an int array (HxWx3)."""
    assert im.mode == "RGB"
    return np.asarray(im).astype(int)


def on_white(colour: int, alpha: int) -> int:
    """Hand formula for compositing one 8-bit channel onto white."""
    return round((alpha * colour + (255 - alpha) * 255) / 255)


def raise_image_error(src, *words: str) -> str:
    with pytest.raises(ImageError) as info:
        load_image(src)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    return message


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, raw: bytes, extra=b""):
    """A minimal PNG built by hand (raw = filtered scanlines), with optional extra chunks."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + extra
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# --- conversions from files ------------------------------------------------------------------


def test_rgb_png_round_trips_exactly(tmp_path: Path) -> None:
    rgb = np.array([[[10, 20, 30], [200, 150, 100]]], dtype=np.uint8)
    path = tmp_path / "rgb.png"
    Image.fromarray(rgb).save(path)
    out = load_image(path)
    assert out.size == (2, 1)
    assert np.array_equal(px(out), rgb)
    assert np.array_equal(px(load_image(str(path))), rgb)


def test_greyscale_png_is_replicated(tmp_path: Path) -> None:
    path = tmp_path / "grey.png"
    Image.fromarray(np.array([[0, 77, 255]], dtype=np.uint8)).save(path)
    assert px(load_image(path)).tolist() == [[[0, 0, 0], [77, 77, 77], [255, 255, 255]]]


def test_bilevel_mode_1(tmp_path: Path) -> None:
    im = Image.new("1", (2, 1), 0)
    im.putpixel((1, 0), 1)
    path = tmp_path / "bw.png"
    im.save(path)
    assert px(load_image(path)).tolist() == [[[0, 0, 0], [255, 255, 255]]]


def _palette_image() -> Image.Image:
    im = Image.new("P", (3, 1), 0)
    im.putpalette([255, 0, 0, 0, 0, 255, 0, 128, 0] + [0] * (253 * 3))
    im.putpixel((1, 0), 1)
    im.putpixel((2, 0), 2)
    return im


def test_palette_without_transparency(tmp_path: Path) -> None:
    path = tmp_path / "pal.png"
    _palette_image().save(path)
    assert px(load_image(path)).tolist() == [[[255, 0, 0], [0, 0, 255], [0, 128, 0]]]


def test_palette_with_index_transparency_is_white(tmp_path: Path) -> None:
    path = tmp_path / "pal_t.png"
    _palette_image().save(path, transparency=1)
    assert px(load_image(path)).tolist() == [[[255, 0, 0], [255, 255, 255], [0, 128, 0]]]


def test_palette_with_partial_alpha_is_composited(tmp_path: Path) -> None:
    path = tmp_path / "pal_a.png"
    _palette_image().save(path, transparency=bytes([255, 128, 0]))
    expected = [
        [255, 0, 0],
        [on_white(0, 128), on_white(0, 128), on_white(255, 128)],  # blue at alpha 128
        [255, 255, 255],  # fully transparent green
    ]
    assert expected[1] == [127, 127, 255]
    assert px(load_image(path)).tolist() == [expected]


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    rgba = np.array([[[200, 100, 0, 64], [10, 20, 30, 255], [9, 9, 9, 0]]], dtype=np.uint8)
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba).save(path)
    expected = [[241, 216, 191], [10, 20, 30], [255, 255, 255]]
    assert expected[0] == [on_white(200, 64), on_white(100, 64), on_white(0, 64)]
    assert px(load_image(path)).tolist() == [expected]
    assert px(load_image(rgba)).tolist() == [expected]
    assert px(load_image(Image.fromarray(rgba))).tolist() == [expected]


def test_la_is_composited_on_white(tmp_path: Path) -> None:
    im = Image.new("LA", (2, 1))
    im.putpixel((0, 0), (50, 200))
    im.putpixel((1, 0), (0, 0))
    path = tmp_path / "la.png"
    im.save(path)
    assert on_white(50, 200) == 94
    assert px(load_image(path)).tolist() == [[[94, 94, 94], [255, 255, 255]]]


def test_16bit_png_scaled_by_257_not_clipped(tmp_path: Path) -> None:
    data = np.array([[65535, 257 * 100], [0, 300]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(data).save(path)
    with Image.open(path) as raw:
        assert raw.mode in ("I;16", "I")  # Pillow would clip these to 255 with convert("L")
    out = px(load_image(path))
    assert out[..., 0].tolist() == [[255, 100], [0, 1]]
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def _filtered(rows: np.ndarray, filters: list[int], bpp: int) -> bytes:
    """PNG scanlines (big-endian bytes of ``rows``) filtered by hand: 0 None, 1 Sub, 2 Up."""
    data = [np.frombuffer(r.astype(">u2").tobytes(), dtype=np.uint8).astype(int) for r in rows]
    out = b""
    for y, (line, f) in enumerate(zip(data, filters)):
        if f == 1:
            left = np.concatenate([np.zeros(bpp, int), line[:-bpp]])
            line = (line - left) % 256
        elif f == 2:
            line = (line - (data[y - 1] if y else 0)) % 256
        out += bytes([f]) + line.astype(np.uint8).tobytes()
    return out


def test_16bit_colour_png_scaled_by_257_not_truncated(tmp_path: Path) -> None:
    """Pillow keeps only the high byte of 16-bit colour (129 -> 0, 383 -> 1, 65407 -> 255);
    the README promises round(v / 257): 129 -> 1, 383 -> 1, 65407 -> 255, 32896 -> 128."""
    rows = np.array(
        [
            [[129, 383, 65535], [25700, 0, 32896], [128, 256, 641]],
            [[65407, 65278, 1], [32767, 32768, 33024], [200, 10000, 50000]],
            [[12, 13, 14], [60000, 50000, 40000], [385, 386, 642]],
        ],
        dtype=np.uint16,
    )
    path = tmp_path / "deep_rgb.png"
    path.write_bytes(png_bytes(3, 3, 16, 2, _filtered(rows, [0, 1, 2], bpp=6)))
    expected = np.floor(rows / 257 + 0.5).astype(int)
    assert expected[0, 0].tolist() == [1, 1, 255]  # by hand: 129/257 = 0.502, 383/257 = 1.49
    assert (px(load_image(path)) == expected).all()


def test_16bit_rgba_png_composited_on_white(tmp_path: Path) -> None:
    rows = np.array([[[257 * 200, 129, 0, 65535], [0, 0, 0, 0], [257 * 10, 0, 0, 257 * 51]]])
    path = tmp_path / "deep_rgba.png"
    path.write_bytes(png_bytes(3, 1, 16, 6, _filtered(rows, [1], bpp=8)))
    a = 51 / 255  # alpha of the last pixel
    last = [round(a * 10 + (1 - a) * 255), round((1 - a) * 255), round((1 - a) * 255)]
    assert px(load_image(path)).tolist() == [[[200, 1, 0], [255, 255, 255], last]]


def test_16bit_colour_png_follows_exif_orientation(tmp_path: Path) -> None:
    rows = np.zeros((1, 2, 3), dtype=np.uint16)
    rows[0, 0] = 65535  # left pixel white, right black
    exif = Image.Exif()
    exif[0x0112] = 6  # turn 90 degrees clockwise: the left pixel goes on top
    payload = exif.tobytes()[6:] if exif.tobytes().startswith(b"Exif") else exif.tobytes()
    chunk = (
        struct.pack(">I", len(payload))
        + b"eXIf"
        + payload
        + struct.pack(">I", zlib.crc32(b"eXIf" + payload))
    )
    path = tmp_path / "deep_turned.png"
    path.write_bytes(png_bytes(2, 1, 16, 2, _filtered(rows, [0], bpp=6), chunk))
    assert px(load_image(path)).tolist() == [[[255, 255, 255]], [[0, 0, 0]]]


def test_16bit_png_colour_key_transparency(tmp_path: Path) -> None:
    raw = b"\x00" + struct.pack(">HH", 257 * 10, 257 * 20)
    trns = struct.pack(">H", 257 * 20)
    extra = struct.pack(">I", 2) + b"tRNS" + trns + struct.pack(">I", zlib.crc32(b"tRNS" + trns))
    path = tmp_path / "deep_key.png"
    path.write_bytes(png_bytes(2, 1, 16, 0, raw, extra))
    assert px(load_image(path)).tolist() == [[[10, 10, 10], [255, 255, 255]]]


def test_16bit_big_endian_pil_image() -> None:
    im = Image.frombytes("I;16B", (3, 1), struct.pack(">HHH", 65535, 257 * 100, 129))
    assert px(load_image(im))[..., 0].tolist() == [[255, 100, 1]]


def test_16bit_pgm_mode_i(tmp_path: Path) -> None:
    path = tmp_path / "deep.pgm"
    path.write_bytes(b"P5\n3 1\n65535\n" + struct.pack(">HHH", 65535, 257 * 100, 0))
    with Image.open(path) as raw:
        assert raw.mode == "I"
    assert px(load_image(path))[..., 0].tolist() == [[255, 100, 0]]


def test_mode_i_outside_16bit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wide.tif"
    Image.fromarray(np.array([[70000, 5]], dtype=np.int32)).save(path)
    raise_image_error(path, "wide.tif", "70000", "16-bit")


def test_mode_f_images(tmp_path: Path) -> None:
    im = Image.fromarray(np.array([[0.0, 0.5, 1.0, 0.2]], dtype=np.float32))
    assert im.mode == "F"
    assert px(load_image(im))[..., 0].tolist() == [[0, 128, 255, 51]]
    path = tmp_path / "float.tif"
    Image.fromarray(np.array([[0.5, 2.0]], dtype=np.float32)).save(path)
    raise_image_error(path, "float.tif", "[0, 1]", "2")


def test_cmyk_and_ycbcr_converted_by_pil(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (2, 1), (0, 0, 0, 0))
    cmyk.putpixel((1, 0), (0, 255, 255, 0))
    assert px(load_image(cmyk)).tolist() == [[[255, 255, 255], [255, 0, 0]]]
    path = tmp_path / "cmyk.jpg"
    cmyk.save(path, quality=100)
    assert load_image(path).mode == "RGB"
    ycc = Image.new("YCbCr", (1, 1), (200, 100, 150))
    assert np.array_equal(px(load_image(ycc)), np.asarray(ycc.convert("RGB")))


def test_exif_orientation_rotates_jpeg(tmp_path: Path) -> None:
    arr = np.zeros((16, 32, 3), dtype=np.uint8)
    arr[:, :16] = (255, 0, 0)  # left half red
    arr[:, 16:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # display needs a 90 degree clockwise turn
    path = tmp_path / "rotated.jpg"
    Image.fromarray(arr).save(path, exif=exif.tobytes(), quality=95)
    out = load_image(path)
    assert out.size == (16, 32)  # width and height swapped
    pixels = px(out)
    assert pixels[4, 8, 0] > 200 and pixels[4, 8, 2] < 60  # left half is now on top
    assert pixels[28, 8, 2] > 200 and pixels[28, 8, 0] < 60
    plain = tmp_path / "plain.jpg"
    Image.fromarray(arr).save(plain, quality=95)
    assert load_image(plain).size == (32, 16)


def test_result_is_a_loaded_independent_copy() -> None:
    src = Image.new("RGB", (2, 2), (1, 2, 3))
    out = load_image(src)
    out.putpixel((0, 0), (9, 9, 9))
    assert src.getpixel((0, 0)) == (1, 2, 3)


def test_files_are_closed(tmp_path: Path) -> None:
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd")
    good = tmp_path / "good.png"
    Image.new("RGB", (4, 4)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(good.read_bytes()[:40])
    before = open_fds()
    for _ in range(5):
        load_image(good)
        with pytest.raises(ImageError):
            load_image(bad)
    assert open_fds() == before


# --- conversions from arrays -----------------------------------------------------------------


def test_uint8_arrays_of_each_shape() -> None:
    grey = np.array([[0, 128]], dtype=np.uint8)
    assert px(load_image(grey)).tolist() == [[[0, 0, 0], [128, 128, 128]]]
    assert px(load_image(grey[..., None])).tolist() == [[[0, 0, 0], [128, 128, 128]]]
    rgb = np.array([[[1, 2, 3]]], dtype=np.uint8)
    assert px(load_image(rgb)).tolist() == [[[1, 2, 3]]]
    rgba = np.array([[[100, 0, 255, 128]]], dtype=np.uint8)
    assert px(load_image(rgba)).tolist() == [[[on_white(100, 128), 127, 255]]]


def test_non_contiguous_array() -> None:
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    view = rgb[:, ::-1]
    assert np.array_equal(px(load_image(view)), view)


def test_uint16_array() -> None:
    data = np.array([[65535, 257 * 100, 128, 129]], dtype=np.uint16)
    assert px(load_image(data))[..., 0].tolist() == [[255, 100, 0, 1]]
    assert px(load_image(data.astype(">u2")))[..., 0].tolist() == [[255, 100, 0, 1]]


def test_float_array() -> None:
    data = np.array([[0.0, 0.5], [1.0, 0.2]], dtype=np.float64)
    assert px(load_image(data))[..., 0].tolist() == [[0, 128], [255, 51]]
    rgb = np.zeros((1, 1, 3), dtype=np.float32)
    rgb[0, 0] = (1.0, 0.25, 0.0)
    assert px(load_image(rgb)).tolist() == [[[255, 64, 0]]]


def test_bool_array() -> None:
    data = np.array([[True, False]])
    assert px(load_image(data)).tolist() == [[[255, 255, 255], [0, 0, 0]]]


# --- bad input -------------------------------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.png"
    msg = raise_image_error(missing, "no such file", str(missing))
    assert msg == f"no such file: {missing}"
    raise_image_error(str(missing), "no such file")


def test_directory(tmp_path: Path) -> None:
    raise_image_error(tmp_path, str(tmp_path), "directory")


def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("hello, this is not a picture\n")
    raise_image_error(path, "notes.png", "not an image")


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.jpg"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    raise_image_error(path, "noise.jpg", "not an image")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file(tmp_path: Path, fmt: str) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    path = tmp_path / f"cut.{fmt.lower()}"
    Image.fromarray(noise).save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    raise_image_error(path, str(path), "truncated")


def test_png_with_bad_checksum(tmp_path: Path) -> None:
    data = bytearray(png_bytes(1, 1, 8, 0, b"\x00\x07"))
    data[-20] ^= 0xFF  # flip a byte inside IDAT, its CRC no longer matches
    path = tmp_path / "crc.png"
    path.write_bytes(bytes(data))
    raise_image_error(path, "crc.png")


def test_decompression_bomb_warning_range(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (11, 10)).save(path)  # 110 pixels: above the limit, below twice it
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    raise_image_error(path, "big.png", "110 pixels", "MAX_IMAGE_PIXELS=100")


def test_decompression_bomb_error_range(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "huge.png"
    Image.new("RGB", (20, 20)).save(path)  # 400 pixels: Pillow raises DecompressionBombError
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    raise_image_error(path, "huge.png", "400 pixels", "MAX_IMAGE_PIXELS=100")


def test_at_the_pixel_limit_loads(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "ok.png"
    Image.new("RGB", (10, 10)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    assert load_image(path).size == (10, 10)


def test_zero_size_inputs() -> None:
    raise_image_error(np.zeros((0, 5, 3), dtype=np.uint8), "zero size")
    raise_image_error(np.zeros((5, 0), dtype=np.uint8), "zero size")
    raise_image_error(Image.new("RGB", (0, 0)), "zero size")


def test_nan_and_out_of_range_floats() -> None:
    raise_image_error(np.array([[0.5, np.nan]]), "NaN")
    raise_image_error(np.array([[0.5, np.inf]]), "infinite")
    raise_image_error(np.array([[0.5, 1.5]]), "1.5", "[0, 1]")
    raise_image_error(np.array([[-0.1, 0.5]], dtype=np.float32), "-0.1", "[0, 1]")


@pytest.mark.parametrize("shape", [(5,), (2, 2, 2), (2, 2, 5), (1, 2, 2, 3)])
def test_wrong_array_shape(shape: tuple[int, ...]) -> None:
    raise_image_error(np.zeros(shape, dtype=np.uint8), "shape", str(shape))


@pytest.mark.parametrize("dtype", [np.int64, np.int8, np.uint32, np.complex64, object])
def test_unsupported_array_dtype(dtype) -> None:
    raise_image_error(np.zeros((2, 2), dtype=dtype), "dtype")


@pytest.mark.parametrize("src", [42, b"/tmp/x.png", None, [np.zeros((2, 2))]])
def test_unsupported_type(src) -> None:
    raise_image_error(src, "unsupported image input", type(src).__name__)


def test_unknown_sample_through_load_image() -> None:
    raise_image_error("sample:cofee", "unknown sample 'cofee'", "coffee")


# --- load_images and image_label -------------------------------------------------------------


def test_load_images_single_and_many(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.new("RGB", (3, 2), (5, 6, 7)).save(path)
    one = load_images(path)
    assert len(one) == 1 and one[0].size == (3, 2)
    array = np.zeros((4, 5, 3), dtype=np.uint8)
    assert len(load_images(array)) == 1  # an array is one image, not a list of rows
    many = load_images([path, str(path), array, Image.new("L", (1, 1))])
    assert [im.size for im in many] == [(3, 2), (3, 2), (5, 4), (1, 1)]
    assert all(im.mode == "RGB" for im in many)
    assert len(load_images((path, path))) == 2


@pytest.mark.parametrize("empty", [[], ()])
def test_load_images_empty(empty) -> None:
    with pytest.raises(ImageError, match="^no images given$"):
        load_images(empty)


def test_load_images_reports_bad_item(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        load_images([np.zeros((2, 2), dtype=np.uint8), tmp_path / "gone.png"])


@pytest.mark.parametrize(
    ("src", "index", "label"),
    [
        ("chelsea.png", 0, "chelsea"),
        (Path("/some/dir/photo.final.jpg"), 1, "photo.final"),
        ("sample:coffee", 2, "coffee"),
        ("/x/my photo (1).JPG", 3, "my_photo_1"),
        ("café.png", 4, "cafe"),
        ("/x/.hidden.png", 5, "hidden"),
        ("/x/日本.png", 6, "image6"),
        (Image.new("RGB", (1, 1)), 7, "image7"),
        (np.zeros((2, 2)), 8, "image8"),
    ],
)
def test_image_label(src, index: int, label: str) -> None:
    assert image_label(src, index) == label


def test_image_label_is_short_and_safe() -> None:
    label = image_label("a" * 300 + "?*/:.png", 0)
    assert 0 < len(label) <= 64
    assert set(label) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def test_edge_modules_do_not_import_torch() -> None:
    code = (
        "import sys, convscope.data.images, convscope.data.samples; "
        "bad = {'torch', 'skimage', 'sklearn'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
