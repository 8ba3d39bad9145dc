"""Images made on the spot for the upload tests (no files in the repository)."""

import io

from PIL import Image


def png_bytes(*, width: int, height: int, color=(228, 57, 60)) -> bytes:
    """A PNG of one colour with a white square in the middle (a real, decodable image)."""
    image = Image.new("RGB", (width, height), color)
    side = min(width, height) // 3
    image.paste(
        (255, 255, 255),
        (width // 2 - side // 2, height // 2 - side // 2, width // 2 + side // 2, height // 2 + side // 2),
    )
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def bomb_png_bytes(*, width: int, height: int) -> bytes:
    """A small PNG whose header claims width × height pixels (it compresses to almost nothing)."""
    out = io.BytesIO()
    Image.new("1", (width, height)).save(out, format="PNG", optimize=True)
    return out.getvalue()
