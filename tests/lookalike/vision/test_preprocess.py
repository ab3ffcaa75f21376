"""Decoding: every photo a browser can send becomes an upright RGB image, or a clear error."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from lookalike.catalog.manifest import Preprocessing
from lookalike.contracts import Box
from lookalike.errors import BoxTooSmall, BrokenImage, ImageTooSmall, NotAnImage, TooManyPixels
from lookalike.settings import MAX_PIXELS
from lookalike.vision.preprocess import decode_image, load_model_input, to_model_input


def encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def halves(width: int, height: int, left: tuple[int, int, int], right: tuple[int, int, int]) -> Image.Image:
    img = Image.new("RGB", (width, height), left)
    img.paste(right, (width // 2, 0, width, height))
    return img


def test_a_large_jpeg_is_decoded_in_draft_mode_but_never_below_the_model_size() -> None:
    data = encode(Image.new("RGB", (4000, 3000), (120, 80, 40)), "JPEG")
    img = decode_image(data, min_side=232, max_pixels=MAX_PIXELS)
    assert img.mode == "RGB"
    assert min(img.size) >= 232
    assert img.size[0] < 4000  # a reduced scale was decoded, not the full 12 MP


def test_exif_orientation_is_honoured_so_photos_come_out_upright() -> None:
    sideways = halves(400, 200, (255, 0, 0), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    img = decode_image(encode(sideways, "JPEG", exif=exif), min_side=200, max_pixels=MAX_PIXELS)
    assert img.size == (200, 400)
    top, bottom = img.getpixel((100, 20)), img.getpixel((100, 380))
    assert top[0] > 200 and top[2] < 60  # red, the left half, is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_transparency_is_laid_on_white_like_a_product_shot() -> None:
    img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    out = decode_image(encode(img, "PNG"), min_side=32, max_pixels=MAX_PIXELS)
    assert out.getpixel((10, 10)) == (255, 255, 255)


def test_sixteen_bit_greyscale_is_scaled_not_clipped_to_white() -> None:
    depth = np.full((64, 64), 32768, dtype=np.uint16)
    out = decode_image(encode(Image.fromarray(depth), "PNG"), min_side=32, max_pixels=MAX_PIXELS)
    assert out.mode == "RGB"
    assert 120 <= out.getpixel((5, 5))[0] <= 136


@pytest.mark.parametrize("mode", ["CMYK", "P", "L", "LA"])
def test_other_colour_modes_become_rgb(mode: str) -> None:
    img = Image.new("RGB", (64, 64), (200, 30, 30)).convert(mode)
    fmt = "JPEG" if mode in ("CMYK", "L") else "PNG"
    assert decode_image(encode(img, fmt), min_side=32, max_pixels=MAX_PIXELS).mode == "RGB"


def test_an_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (64, 64), c) for c in [(255, 0, 0), (0, 255, 0)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert decode_image(data, min_side=32, max_pixels=MAX_PIXELS).getpixel((5, 5))[0] > 200


def test_heic_from_phones_is_decoded() -> None:
    data = encode(Image.new("RGB", (64, 48), (200, 10, 10)), "HEIF")
    assert decode_image(data, min_side=32, max_pixels=MAX_PIXELS).size == (64, 48)


def test_text_is_not_an_image() -> None:
    with pytest.raises(NotAnImage, match="not an image"):
        decode_image(b"hello, this is text", min_side=32, max_pixels=MAX_PIXELS)


def test_a_truncated_jpeg_is_reported_as_broken() -> None:
    data = encode(Image.effect_noise((512, 512), 64).convert("RGB"), "JPEG")
    with pytest.raises(BrokenImage):
        decode_image(data[: len(data) // 3], min_side=32, max_pixels=MAX_PIXELS)


def test_too_many_pixels_are_refused_before_decoding() -> None:
    data = encode(Image.new("1", (8000, 8000)), "PNG")  # a tiny file that would decode to 64 MP
    with pytest.raises(TooManyPixels, match="megapixels"):
        decode_image(data, min_side=32, max_pixels=MAX_PIXELS)


def test_a_one_pixel_image_is_too_small_to_recognise() -> None:
    with pytest.raises(ImageTooSmall):
        decode_image(encode(Image.new("RGB", (1, 1)), "PNG"), min_side=32, max_pixels=MAX_PIXELS)


def test_model_input_is_a_centre_crop_of_the_resized_image() -> None:
    prep = Preprocessing()
    arr = to_model_input(halves(600, 300, (255, 0, 0), (0, 0, 255)), prep)
    assert arr.shape == (224, 224, 3) and arr.dtype == np.uint8
    assert arr[112, 10, 0] > 200 and arr[112, 213, 2] > 200  # the crop straddles the middle


def test_bytes_to_model_input_in_one_call() -> None:
    data = encode(Image.new("RGB", (800, 600), (10, 20, 30)), "JPEG")
    assert load_model_input(data, Preprocessing(), max_pixels=MAX_PIXELS).shape == (224, 224, 3)


def test_pad_mode_keeps_the_whole_image_and_pads_it_to_a_square_with_the_mean_colour() -> None:
    prep = Preprocessing(mode="pad")
    arr = to_model_input(halves(600, 300, (255, 0, 0), (0, 0, 255)), prep)
    assert arr.shape == (224, 224, 3) and arr.dtype == np.uint8
    assert arr[112, 2, 0] > 200 and arr[112, 221, 2] > 200  # both ends of the wide image survive
    mean_colour = [round(m * 255) for m in prep.mean]
    assert arr[2, 112].tolist() == mean_colour and arr[221, 112].tolist() == mean_colour  # bands above and below


def test_the_default_preprocessing_and_so_existing_model_ids_are_unchanged() -> None:
    assert Preprocessing().mode == "center-crop"
    assert Preprocessing().model_dump_json() == (
        '{"resize":232,"crop":224,"mode":"center-crop","mean":[0.485,0.456,0.406],"std":[0.229,0.224,0.225]}')


def test_a_box_crops_the_upright_photo_before_preprocessing() -> None:
    sideways = halves(600, 400, (255, 0, 0), (0, 0, 255))  # red left, blue right; upright: red top, blue bottom
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    data = encode(sideways, "PNG", exif=exif)
    bottom = decode_image(data, min_side=200, max_pixels=MAX_PIXELS, box=Box.parse("0,0.5,1,1"))
    assert bottom.size == (400, 300)
    r, g, b = np.asarray(bottom).reshape(-1, 3).mean(axis=0)
    assert b > 250 and r < 5


def test_a_box_keeps_a_large_jpeg_sharp_enough_for_the_model() -> None:
    data = encode(Image.new("RGB", (4000, 3000), (120, 80, 40)), "JPEG")
    quarter = decode_image(data, min_side=232, max_pixels=MAX_PIXELS, box=Box.parse("0,0,0.1,0.1"))
    assert min(quarter.size) >= 232  # the draft scale is chosen for the box, not the whole photo


def test_a_box_holding_fewer_pixels_than_the_model_input_is_refused() -> None:
    data = encode(Image.new("RGB", (1000, 800), (10, 10, 10)), "PNG")
    with pytest.raises(BoxTooSmall, match="224"):
        load_model_input(data, Preprocessing(), max_pixels=MAX_PIXELS, box=Box.parse("0,0,0.2,0.2"))
    assert load_model_input(data, Preprocessing(), max_pixels=MAX_PIXELS, box=Box.parse("0,0,0.3,0.3")).shape == (
        224, 224, 3)
