"""Copies the screenshots docs/merchant-guide.md shows from the merchant tour's
output (test-output/merchant-tour/, written by tests/test_merchant_tour_browser.py)
into docs/merchant-guide/: cropped to the part the guide talks about and
quantized to 256 colours, so each stays well under 150 KB.

    .venv/bin/python -m pytest tests/test_merchant_tour_browser.py
    .venv/bin/python scripts/merchant_guide_images.py
"""

from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "test-output" / "merchant-tour"
TARGET = ROOT / "docs" / "merchant-guide"

# name -> the height kept from the top (None: the whole shot)
SHOTS = {
    "shop-settings": 800,
    "buyer-home-phone": None,
    "product-titles": 200,
    "product-image": None,
    "product-tier": None,
    "product-field": None,
    "keys-upload": None,
    "keys-report": None,
    "coupon": 1130,
    "notifications": None,
    "buyer-checkout-phone": None,
    "buyer-keys-phone": None,
    "order": None,
    "dashboard": 470,
    "manual-delivery": 300,
    "buyer-manual-delivered-phone": 660,
    "sale-dashboard": None,
}


def main() -> None:
    TARGET.mkdir(parents=True, exist_ok=True)
    for name, height in SHOTS.items():
        with Image.open(SOURCE / f"{name}.png") as shot:
            image = shot.convert("RGB")
        if height is not None:
            image = image.crop((0, 0, image.width, min(height, image.height)))
        image = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        path = TARGET / f"{name}.png"
        image.save(path, optimize=True)
        print(f"{path.relative_to(ROOT)}: {image.width}x{image.height}, {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
