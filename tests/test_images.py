"""explorer.images: a corpus of awkward files generated here, samples, preprocessing and de-normalising."""

from __future__ import annotations

import io
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image, ImageFile

from explorer.errors import ExplorerError
from explorer.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MAX_ASPECT,
    SAMPLES,
    ImageError,
    Preprocessing,
    denormalise,
    load_image,
    preprocess,
    preprocessing_for,
    sample_image,
    to_uint8,
)


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_by_hand(width: int, height: int, bit_depth: int, raw: bytes) -> bytes:
    """An RGB PNG written chunk by chunk (valid CRCs): IHDR claiming width x height, IDAT holding ``raw``."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 2, 0, 0, 0)
    chunks = png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height RGB pixels; its IDAT holds almost nothing."""
    return png_by_hand(width, height, 8, b"\x00" * 64)


def gradient(width: int = 48, height: int = 32) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


# --------------------------------------------------------------------------------------------- refused files


def assert_refused(data: bytes, *words: str) -> ImageError:
    with pytest.raises(ImageError) as info:
        load_image(data)
    message = str(info.value)
    assert isinstance(info.value, ExplorerError) and isinstance(info.value, ValueError)
    for word in words:
        assert word in message, message
    return info.value


def test_empty_file_is_refused() -> None:
    assert_refused(b"", "empty")


def test_text_with_an_image_name_is_refused_as_text() -> None:
    assert_refused(b"name,score\nada,3\n" * 20, "not an image", "looks like text", "PNG, JPEG")


@pytest.mark.parametrize(
    ("data", "guess"),
    [(b"%PDF-1.7\n%\xe2\xe3", "PDF"), (b"PK\x03\x04" + b"\x00" * 40, "ZIP"),
     (b"\x00\x00\x00\x18ftypheic" + b"\x00" * 40, "HEIC"), (b"\x00\x01\x02\xff\xfe" * 30, "other kind")],
)
def test_other_files_are_named_in_the_message(data: bytes, guess: str) -> None:
    assert_refused(data, guess)


def test_truncated_jpeg_is_refused() -> None:
    data = encode(gradient(64, 64), "JPEG", quality=90)
    assert_refused(data[: len(data) // 2], "truncated")


def test_truncated_jpeg_is_refused_even_when_pillow_is_told_to_accept_truncation(monkeypatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = encode(gradient(64, 64), "JPEG", quality=90)
    assert_refused(data[: len(data) // 2], "truncated")


def test_corrupt_png_data_is_refused() -> None:
    data = bytearray(encode(gradient(64, 64), "PNG"))
    start = data.index(b"IDAT") + 4
    data[start : start + 200] = bytes(200)  # wipe the compressed stream, keep the headers
    assert_refused(bytes(data), "damaged")


def test_bomb_png_is_refused_from_its_header_without_allocating() -> None:
    data = png_claiming(100_000, 100_000)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        error = assert_refused(data, "megapixels")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 1.0
    assert peak < 10 * 2**20, f"peak {peak / 2**20:.1f} MB"
    assert "100,000" in str(error) or "before decoding" in str(error)


def test_image_just_over_our_pixel_limit_is_refused_from_its_header() -> None:
    data = png_claiming(8000, 8000)  # 64 MP: under Pillow's own bomb limit, over ours
    assert Image.open(io.BytesIO(data)).size == (8000, 8000)
    tracemalloc.start()
    try:
        assert_refused(data, "8,000 x 8,000", "limit is 40 megapixels")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20


def test_pixel_limit_is_a_parameter() -> None:
    data = encode(gradient(100, 100), "PNG")
    with pytest.raises(ImageError, match="megapixels"):
        load_image(data, max_pixels=5_000)
    assert load_image(data, max_pixels=10_000).size == (100, 100)


def test_oversized_file_is_refused_before_reading(tmp_path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(encode(gradient(100, 100), "PNG"))
    with pytest.raises(ImageError, match="MB"):
        load_image(path, max_bytes=100)
    with pytest.raises(ImageError, match="MB"):
        load_image(io.BytesIO(path.read_bytes()), max_bytes=100)


def test_missing_path_and_wrong_type_are_refused(tmp_path) -> None:
    with pytest.raises(ImageError, match="no image file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="Cannot read"):
        load_image(12345)  # type: ignore[arg-type]


def test_formats_outside_the_list_are_refused() -> None:
    data = encode(gradient(16, 16), "TGA")
    assert_refused(data, "not an image we can read")


# --------------------------------------------------------------------------------------------- accepted files


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF"])
def test_every_accepted_format_decodes_to_rgb(fmt: str) -> None:
    img = gradient(40, 30)
    out = load_image(encode(img, fmt))
    assert out.mode == "RGB" and out.size == (40, 30)
    if fmt in ("PNG", "BMP", "TIFF"):
        assert np.array_equal(np.asarray(out), np.asarray(img))


def test_sources_bytes_path_and_file_objects_agree(tmp_path) -> None:
    data = encode(gradient(), "PNG")
    path = tmp_path / "x.png"
    path.write_bytes(data)

    class Uploaded:  # Streamlit's UploadedFile offers getvalue()
        def getvalue(self) -> bytes:
            return data

    arrays = [np.asarray(load_image(s)) for s in (data, path, str(path), io.BytesIO(data), Uploaded())]
    with path.open("rb") as fh:
        arrays.append(np.asarray(load_image(fh)))
    assert all(np.array_equal(a, arrays[0]) for a in arrays)


def test_cmyk_jpeg_becomes_rgb() -> None:
    cmyk = Image.new("CMYK", (20, 10), (0, 255, 255, 0))  # pure red in CMYK
    out = load_image(encode(cmyk, "JPEG", quality=95))
    assert out.mode == "RGB"
    r, g, b = np.asarray(out).reshape(-1, 3).mean(axis=0)
    assert r > 200 and g < 60 and b < 60


def test_16_bit_png_is_rescaled_not_clipped() -> None:
    values = np.array([[0, 32768, 65535, 257]], dtype=np.uint16)
    data = encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
    out = np.asarray(load_image(data))
    assert out.shape == (1, 4, 3)
    assert out[0, :, 0].tolist() == [0, 128, 255, 1]
    assert np.array_equal(out[..., 0], out[..., 2])  # greyscale


def test_48_bit_rgb_png_is_rescaled() -> None:
    pixels = np.array([[[65535, 32768, 0], [256, 511, 65280]]], dtype=">u2")  # big-endian, as PNG stores it
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)  # filter byte 0 before every row
    out = np.asarray(load_image(png_by_hand(2, 1, 16, raw)))
    assert out.tolist() == [[[255, 128, 0], [1, 1, 255]]]


def test_32_bit_integer_image_with_16_bit_values_is_rescaled() -> None:
    img = Image.fromarray(np.array([[0, 65535]], dtype=np.int32), mode="I")
    out = np.asarray(load_image(encode(img, "TIFF")))
    assert out[0, :, 0].tolist() == [0, 255]


def test_rgba_transparent_becomes_white_and_half_transparent_is_blended() -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (0, 0, 0, 0)  # transparent black -> white
    rgba[0, 1] = (255, 0, 0, 255)  # opaque red stays red
    rgba[1, 0] = (0, 0, 0, 128)  # half black over white -> mid grey
    out = np.asarray(load_image(encode(Image.fromarray(rgba, "RGBA"), "PNG")))
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [255, 0, 0]
    assert 120 <= out[1, 0, 0] <= 135


def test_la_greyscale_with_alpha_is_composited() -> None:
    la = Image.fromarray(np.array([[[0, 0], [0, 255]]], dtype=np.uint8), "LA")
    out = np.asarray(load_image(encode(la, "PNG")))
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [0, 0, 0]


def test_palette_image_keeps_its_colours() -> None:
    img = gradient(16, 16).quantize(8)
    assert img.mode == "P"
    out = load_image(encode(img, "PNG"))
    assert np.array_equal(np.asarray(out), np.asarray(img.convert("RGB")))


def test_palette_with_transparent_index_becomes_white() -> None:
    img = Image.new("P", (4, 1))
    img.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    img.putdata([0, 1, 0, 1])
    out = np.asarray(load_image(encode(img, "PNG", transparency=0)))
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [0, 0, 255]


def test_greyscale_and_bilevel_become_rgb() -> None:
    grey = Image.fromarray(np.array([[0, 100, 255]], dtype=np.uint8), "L")
    assert np.asarray(load_image(encode(grey, "PNG")))[0, :, 1].tolist() == [0, 100, 255]
    assert load_image(encode(grey.convert("1"), "BMP")).mode == "RGB"


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    out = np.asarray(load_image(data))
    assert out[4, 4].tolist() == [255, 0, 0]


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (60, 20), (255, 255, 255))
    img.paste((255, 0, 0), (0, 0, 10, 20))  # red stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    out = load_image(encode(img, "JPEG", quality=95, exif=exif))
    assert out.size == (20, 60)
    top = np.asarray(out)[2, 10]  # the left stripe ends up on top
    assert top[0] > 200 and top[1] < 80


def test_a_photo_whose_exif_cannot_be_applied_is_kept_as_stored(monkeypatch) -> None:
    def broken(_img):
        raise SyntaxError("bad EXIF IFD")

    monkeypatch.setattr("explorer.images.ImageOps.exif_transpose", broken)
    assert load_image(encode(gradient(30, 20), "JPEG")).size == (30, 20)


def test_one_pixel_image_loads_and_preprocesses() -> None:
    out = load_image(encode(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"))
    assert out.size == (1, 1)
    prep = preprocess(out, resize=72, crop=64)
    assert prep.tensor.shape == (1, 3, 64, 64)
    torch.testing.assert_close(denormalise(prep.tensor)[0, :, 0, 0], torch.tensor([10, 20, 30]) / 255.0)


def test_panorama_goes_through_preprocessing_quickly_and_small() -> None:
    pano = load_image(encode(gradient(6000, 40), "PNG"))
    start = time.perf_counter()
    prep = preprocess(pano)
    assert time.perf_counter() - start < 2.0
    assert prep.tensor.shape == (1, 3, 224, 224) and prep.trimmed
    assert max(prep.resized.size) <= MAX_ASPECT * 256 + 1 and min(prep.resized.size) == 256


# --------------------------------------------------------------------------------------------- samples


def test_every_sample_is_an_rgb_photograph() -> None:
    assert {"cat (Chelsea)", "astronaut (Eileen Collins)", "coffee cup", "rocket launch"} <= set(SAMPLES)
    for name in SAMPLES:
        img = sample_image(name)
        assert img.mode == "RGB" and min(img.size) >= 100, name


def test_unknown_sample_is_an_image_error() -> None:
    with pytest.raises(ImageError, match="cat"):
        sample_image("dog")


# --------------------------------------------------------------------------------------------- preprocessing


def test_preprocess_matches_torchvision_weights_transforms() -> None:
    img = sample_image("cat (Chelsea)")
    reference = torchvision.models.ResNet50_Weights.IMAGENET1K_V2.transforms()  # metadata only, no download
    prep = preprocess(img, resize=reference.resize_size[0], crop=reference.crop_size[0])
    torch.testing.assert_close(prep.tensor[0], reference(img))
    assert prep.resized.size[1] == 232 and prep.cropped.size == (224, 224) and not prep.trimmed


def test_denormalise_inverts_normalisation_and_to_uint8_gives_the_crop_back() -> None:
    prep = preprocess(gradient(80, 80), resize=64, crop=64)
    restored = to_uint8(denormalise(prep.tensor, prep.mean, prep.std))
    assert restored.shape == (64, 64, 3)
    assert np.abs(restored.astype(int) - np.asarray(prep.cropped).astype(int)).max() <= 1


def test_preprocess_puts_the_tensor_on_the_requested_device() -> None:
    assert preprocess(gradient(), resize=32, crop=32, device=torch.device("cpu")).tensor.device.type == "cpu"


def test_preprocessing_for_scales_resize_with_the_input_size() -> None:
    base = preprocessing_for("resnet18")
    assert base.mean == IMAGENET_MEAN and base.std == IMAGENET_STD and base.resize >= base.crop
    big = preprocessing_for("resnet18", 448)
    assert big.crop == 448 and big.resize == round(448 * base.resize / base.crop)
    assert preprocessing_for("resnet18", base.crop) == base
    assert isinstance(big, Preprocessing)


def test_bad_preprocessing_sizes_are_refused() -> None:
    with pytest.raises(ImageError):
        preprocess(gradient(), resize=100, crop=200)
    with pytest.raises(ImageError):
        preprocessing_for("resnet18", 0)
