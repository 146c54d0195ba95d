"""Residents' and volunteers' photos: checked, turned upright and re-encoded without metadata.

A photo must be at most ``max_bytes`` and decode (fully) as JPEG, PNG or WEBP; anything else
(another format, a truncated file, a decompression bomb) is refused with a clear 422. The
EXIF orientation is applied, the longer side brought down to ``MAX_SIDE`` px, and the image
re-encoded as JPEG (quality 85) with no metadata at all: no GPS position, camera or time.
"""

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from hub.residents.requests.errors import RequestError

FORMATS = ("JPEG", "PNG", "WEBP")
MAX_SIDE = 1600
MAX_PIXELS = 40_000_000  # more is a decompression bomb for a phone photo


@dataclass(frozen=True)
class Photo:
    data: bytes  # JPEG, no metadata
    width: int
    height: int
    mime: str = "image/jpeg"


def clean_photo(raw: bytes, max_bytes: int) -> Photo:
    if not raw:
        raise RequestError("照片是空的", "the photo is empty", 422, "photo")
    if len(raw) > max_bytes:
        raise RequestError(f"照片太大（上限 {max_bytes // 1024} KB）", f"the photo is larger than {max_bytes} bytes",
                           413, "photo_size")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw), formats=FORMATS) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise Image.DecompressionBombError("too many pixels")
                img.load()
                upright = ImageOps.exif_transpose(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise RequestError("照片像素过多", "the photo has too many pixels", 422, "photo") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise RequestError("照片无法识别：请上传 JPEG、PNG 或 WEBP 图片",
                           "not a readable JPEG, PNG or WEBP image", 422, "photo") from None
    if upright.mode not in ("RGB", "L"):
        upright = upright.convert("RGB")
    upright.thumbnail((MAX_SIDE, MAX_SIDE))
    out = io.BytesIO()
    upright.save(out, "JPEG", quality=85)  # no exif=, no icc_profile=: nothing but pixels
    return Photo(out.getvalue(), upright.width, upright.height)
