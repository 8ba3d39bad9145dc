"""Uploaded images (product pictures, the shop logo): what an upload may be,
and the smaller copies the storefront shows.

An upload is checked before anything is stored: at most IMAGE_UPLOAD_MAX_BYTES,
JPEG, PNG or WebP, and at most IMAGE_UPLOAD_MAX_SIDE pixels a side and
IMAGE_UPLOAD_MAX_PIXELS in all. The dimensions come from the file's header, read
before any pixel is decoded, so a small file that would decompress to gigabytes
(a decompression bomb) is refused without being decoded."""

import io
import warnings
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext_lazy as _
from PIL import Image, ImageOps, UnidentifiedImageError

ALLOWED_FORMATS = {"JPEG", "PNG", "WEBP"}
# Never decode more than this, whatever the settings say: Pillow's own guard
# (DecompressionBombError) is the second line behind the header check.
Image.MAX_IMAGE_PIXELS = 50_000_000


@dataclass(frozen=True)
class ImageSize:
    """A rendition: the longest side it is scaled down to (never up)."""

    name: str
    longest_side: int


# The product card (its picture is shown about 80 px wide: sharp on a 3x phone screen) and the
# product page (up to 360 px wide, zoomable).
CARD = ImageSize("card", 320)
PAGE = ImageSize("page", 800)
# The header logo: shown 32 px high, 96 for sharp screens.
LOGO = ImageSize("logo", 96)


def image_validate(file) -> None:
    """Django validator for an uploaded image field. Raises ValidationError with
    the reason. The size limits are checked from the header, before any pixel
    is decoded; only then is the image decoded once to prove it whole."""
    if not file or getattr(file, "_committed", False):
        return  # no image, or one already stored (checked when it was uploaded)
    size = getattr(file, "size", None)
    if size is not None and size > settings.IMAGE_UPLOAD_MAX_BYTES:
        raise ValidationError(
            _("The image is %(size)s; the largest allowed is %(max)s."),
            code="image_too_large",
            params={"size": filesizeformat(size), "max": filesizeformat(settings.IMAGE_UPLOAD_MAX_BYTES)},
        )
    position = file.tell() if hasattr(file, "tell") else None
    try:
        file.seek(0)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                with Image.open(file) as image:
                    fmt, (width, height) = image.format, image.size
                    _check_dimensions(width, height)
                    if fmt not in ALLOWED_FORMATS:
                        raise ValidationError(
                            _("This image is %(format)s; upload a JPEG, PNG or WebP image."),
                            code="image_format",
                            params={"format": fmt or _("an unknown format")},
                        )
                    image.verify()
                # verify() checks little of a JPEG: decode it too (at a reduced
                # scale where the format allows), so a truncated or damaged file
                # is refused here rather than failing when its copies are made.
                file.seek(0)
                with Image.open(file) as image:
                    image.draft("RGB", (PAGE.longest_side, PAGE.longest_side))
                    image.load()
            except (Image.DecompressionBombError, Image.DecompressionBombWarning):
                raise ValidationError(_too_many_pixels(), code="image_dimensions") from None
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
                raise ValidationError(
                    _("This file is not a JPEG, PNG or WebP image, or it is damaged."), code="image_invalid"
                ) from None
    finally:
        if position is not None:
            file.seek(position)


def _too_many_pixels():
    return _("The image may be at most %(side)d pixels wide and high, and %(pixels)s megapixels in all.") % {
        "side": settings.IMAGE_UPLOAD_MAX_SIDE,
        "pixels": f"{settings.IMAGE_UPLOAD_MAX_PIXELS / 1_000_000:g}",
    }


def _check_dimensions(width: int, height: int) -> None:
    too_big = max(width, height) > settings.IMAGE_UPLOAD_MAX_SIDE or width * height > settings.IMAGE_UPLOAD_MAX_PIXELS
    if too_big:
        raise ValidationError(_too_many_pixels(), code="image_dimensions")


def image_rendition(source, *, size: ImageSize) -> ContentFile:
    """A WebP copy of an already validated image, its longest side scaled down
    to size.longest_side (smaller images keep theirs), turned upright by its
    EXIF orientation. Transparency is kept."""
    source.seek(0)
    with Image.open(source) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if "transparency" in image.info or "A" in image.mode else "RGB")
        image.thumbnail((size.longest_side, size.longest_side), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        image.save(out, format="WEBP", quality=82, method=4)
    return ContentFile(out.getvalue())
