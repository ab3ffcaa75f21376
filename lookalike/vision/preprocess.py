"""Photo bytes to the network's input: decode cheaply, stand it upright, resize and crop.

The indexing job and the classifier service both use this module, so a catalogue image and
the same image uploaded by a shopper become the same input.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from pillow_heif import register_heif_opener

from lookalike.catalog.manifest import Preprocessing
from lookalike.contracts import Box
from lookalike.errors import (
    BoxTooSmall,
    BrokenImage,
    ImageTooSmall,
    NotAnImage,
    TooManyPixels,
)

ACCEPTED_FORMATS = {"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF"}
ACCEPTED_NAMES = "JPEG, PNG, WebP, GIF, BMP, TIFF or HEIC"
MIN_SIDE = 16
BROKEN = "This image is damaged or incomplete, so it can't be read. Please try another photo."
# The first bytes of the accepted formats: a file that starts like one but won't open is damaged, not foreign.
IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*")
EXIF_ORIENTATION = 0x0112

register_heif_opener()  # teaches Pillow to open HEIC/HEIF, the format phones upload


def decode_image(data: bytes, *, min_side: int, max_pixels: int, box: Box | None = None,
                 min_box_side: int = MIN_SIDE) -> Image.Image:
    """Decode to an upright RGB image whose shorter side is still at least `min_side` where possible.

    JPEGs decode in draft mode at 1/2, 1/4 or 1/8 scale: a 12 MP photo costs about 11 ms
    instead of 107 ms, and the network never sees the lost pixels anyway. With a `box`, the
    upright photo is cropped to it, and the draft keeps the box's shorter side at `min_side`;
    a box whose shorter side holds fewer than `min_box_side` of the photo's pixels is refused.
    """
    try:
        img = Image.open(io.BytesIO(data))
        if img.format == "PNG":
            img.verify()  # checks every chunk's CRC, which decoding alone skips for pixel data
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        # Pillow's own guard, at twice its MAX_IMAGE_PIXELS; ours below is usually the stricter one.
        raise TooManyPixels(f"This image has far more pixels than the {max_pixels / 1e6:.0f} megapixel limit.") from None
    except UnidentifiedImageError:
        if data.startswith(IMAGE_SIGNATURES):
            raise BrokenImage(BROKEN) from None
        raise NotAnImage(f"This file is not an image we can read. Please send a {ACCEPTED_NAMES} photo.") from None
    except (OSError, ValueError, SyntaxError):
        raise BrokenImage(BROKEN) from None
    if img.format not in ACCEPTED_FORMATS:
        raise NotAnImage(f"{img.format} images are not supported. Please send a {ACCEPTED_NAMES} photo.")
    width, height = img.size
    if width * height > max_pixels:
        raise TooManyPixels(
            f"This image is {width}×{height} pixels; the limit is {max_pixels / 1e6:.0f} megapixels."
        )
    if min(width, height) < MIN_SIDE:
        raise ImageTooSmall(f"This image is only {width}×{height} pixels, too small to recognise anything.")
    if box is not None:
        upright = (height, width) if img.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8) else (width, height)
        box_side = min((box.x1 - box.x0) * upright[0], (box.y1 - box.y0) * upright[1])
        if box_side < min_box_side:
            raise BoxTooSmall(f"The box holds {box_side:.0f} pixels of this photo across its shorter side; "
                              f"the model needs at least {min_box_side}. Draw a larger box, or send a larger photo.")
        min_side = math.ceil(min_side / min(box.x1 - box.x0, box.y1 - box.y0))
    try:
        img.draft("RGB", (min_side, min_side))
        upright_image = _to_rgb(ImageOps.exif_transpose(img))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise BrokenImage(BROKEN) from None
    return upright_image if box is None else upright_image.crop(box.pixels(*upright_image.size))


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB with transparency laid on white (product shots) and 16-bit depth scaled, not clipped."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if img.mode.startswith("I"):
        depth = np.asarray(img)
        shift = 8 if depth.max(initial=0) > 255 else 0
        return Image.fromarray((depth >> shift).clip(0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode == "F":
        return Image.fromarray(np.asarray(img).clip(0, 255).astype(np.uint8), "L").convert("RGB")
    return img.convert("RGB") if img.mode != "RGB" else img


def to_model_input(img: Image.Image, prep: Preprocessing) -> np.ndarray:
    """The network's (crop, crop, 3) uint8 input, by `prep.mode`: a centre crop, or the whole image padded.

    Normalisation happens on the whole batch in the model, where it is one vector operation.
    """
    if prep.mode == "pad":
        return _padded_to_square(img, prep)
    width, height = img.size
    scale = prep.resize / min(width, height)
    size = (max(prep.crop, round(width * scale)), max(prep.crop, round(height * scale)))
    resized = img.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    left = (size[0] - prep.crop) // 2
    top = (size[1] - prep.crop) // 2
    cropped = resized.crop((left, top, left + prep.crop, top + prep.crop))
    return np.asarray(cropped, dtype=np.uint8)


def _padded_to_square(img: Image.Image, prep: Preprocessing) -> np.ndarray:
    """Longer side to `prep.crop`, centred on the mean colour, which normalises to zero: nothing is cut off."""
    width, height = img.size
    scale = prep.crop / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = img.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    fill = tuple(round(m * 255) for m in prep.mean)
    square = Image.new("RGB", (prep.crop, prep.crop), fill)
    square.paste(resized, ((prep.crop - size[0]) // 2, (prep.crop - size[1]) // 2))
    return np.asarray(square, dtype=np.uint8)


def load_model_input(data: bytes, prep: Preprocessing, *, max_pixels: int, box: Box | None = None) -> np.ndarray:
    """Bytes straight to the network's input array; with a `box`, of that region of the upright photo only."""
    image = decode_image(data, min_side=prep.resize, max_pixels=max_pixels, box=box, min_box_side=prep.crop)
    return to_model_input(image, prep)
