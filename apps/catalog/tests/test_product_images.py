"""Product images through the admin's real form (multipart POST): the
upload is checked (type, bytes, pixels), its storefront copies are made at the
right size, and they show on the card and the page; a refused upload says why
and changes nothing (issue 13)."""

import io
import os

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from apps.catalog.models import Product
from apps.catalog.selectors import product_info_get
from testing.images import bomb_png_bytes, png_bytes

from .factories import ProductFactory

pytestmark = pytest.mark.django_db


def change_form_data(admin_client, product) -> dict:
    """The product's change form as the admin renders it, ready to post back."""
    page = admin_client.get(reverse("admin:catalog_product_change", args=[product.pk])).context
    form = page["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name != "image"}
    data.update(sale_starts_at_0="", sale_starts_at_1="", sale_ends_at_0="", sale_ends_at_1="")
    data["is_active"] = "on"
    data.update(inline_management_data(page))
    return data


def inline_management_data(page) -> dict:
    """The inline formsets' management forms (price tiers, checkout fields), as the page carries them."""
    data = {}
    for inline in page["inline_admin_formsets"]:
        management = inline.formset.management_form
        for name in management.fields:
            data[management.add_prefix(name)] = management[name].value()
    return data


def post_image(admin_client, product, upload):
    data = change_form_data(admin_client, product)
    data["image"] = upload
    return admin_client.post(reverse("admin:catalog_product_change", args=[product.pk]), data)


def test_an_uploaded_png_gets_card_and_page_copies_of_the_right_size(admin_client, media_root):
    product = ProductFactory()
    upload = SimpleUploadedFile("steam.png", png_bytes(width=2000, height=1000), content_type="image/png")

    response = post_image(admin_client, product, upload)

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    product.refresh_from_db()
    assert product.image.name.startswith("products/") and os.path.exists(product.image.path)
    with Image.open(product.image_card.path) as card:
        assert (card.format, card.size) == ("WEBP", (320, 160))
    with Image.open(product.image_page.path) as page:
        assert (page.format, page.size) == ("WEBP", (800, 400))
    info = product_info_get(sku=product.sku)  # the save dropped the cached copy
    assert info.image_card_url == product.image_card.url and info.image_page_url == product.image_page.url


def test_a_small_image_is_not_blown_up(admin_client, media_root):
    product = ProductFactory()
    post_image(admin_client, product, SimpleUploadedFile("s.png", png_bytes(width=200, height=150)))
    product.refresh_from_db()
    with Image.open(product.image_card.path) as card:
        assert card.size == (200, 150)


def test_card_and_page_show_the_image_and_the_tile_without_one(admin_client, client, media_root):
    with_image, without = ProductFactory(title="有图的商品"), ProductFactory(title="无图商品")
    post_image(admin_client, with_image, SimpleUploadedFile("a.png", png_bytes(width=600, height=600)))
    with_image.refresh_from_db()

    home = client.get("/").content.decode()
    assert f'src="{with_image.image_card.url}"' in home
    assert '<span class="tile" aria-hidden="true">无</span>' in home
    assert '<span class="tile" aria-hidden="true">有</span>' not in home
    page = client.get(f"/p/{with_image.sku}").content.decode()
    assert f'class="product-image" src="{with_image.image_page.url}"' in page
    assert "tile-large" in client.get(f"/p/{without.sku}").content.decode()
    # Served from MEDIA_ROOT (SERVE_MEDIA: no nginx in front here).
    served = client.get(with_image.image_card.url)
    assert served.status_code == 200 and b"".join(served.streaming_content)[:4] == b"RIFF"


def truncated_jpeg_bytes() -> bytes:
    whole = jpeg_bytes(width=400, height=300)
    return whole[: len(whole) // 2]


def gif_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 40)).save(out, format="GIF")
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "make_content", "message"),
    [
        ("notes.png", lambda: b"these are not pixels", "请上传有效图片"),  # Django's own message
        # 60 kB of bytes after the PNG's end: still a valid image, but over the 50 kB limit set below.
        ("big.png", lambda: png_bytes(width=300, height=300) + os.urandom(60_000), "最大允许"),
        ("bomb.png", lambda: bomb_png_bytes(width=10_000, height=10_000), "最多 6000 像素"),
        ("anim.gif", gif_bytes, "GIF"),
        ("cut.jpg", truncated_jpeg_bytes, "不是 JPEG、PNG 或 WebP 图片，或已损坏"),
    ],
)
def test_a_bad_upload_is_refused_with_the_reason_and_changes_nothing(
    admin_client, media_root, settings, name, make_content, message
):
    settings.IMAGE_UPLOAD_MAX_BYTES = 50_000
    product = ProductFactory(title="原标题")
    data = change_form_data(admin_client, product)
    data.update(title_zh_hans="新标题", image=SimpleUploadedFile(name, make_content()))

    response = admin_client.post(reverse("admin:catalog_product_change", args=[product.pk]), data)

    assert response.status_code == 200
    errors = " ".join(response.context["adminform"].form.errors.get("image", []))
    assert message in errors, errors
    assert message in response.content.decode()
    stored = Product.objects.get(pk=product.pk)
    assert (stored.title_zh_hans, stored.image.name, stored.image_card.name) == ("原标题", "", "")
    assert not (media_root / "products").exists()


def test_a_product_added_with_an_image_has_its_copies_and_the_api_links_it(admin_client, client, media_root):
    data = {
        "sku": "NEW-1",
        "title_zh_hans": "新商品",
        "title_en": "New product",
        "description_zh_hans": "",
        "description_en": "",
        "category": "",
        "is_active": "on",
        "price": "5.00",
        "currency": "CNY",
        "sale_starts_at_0": "",
        "sale_starts_at_1": "",
        "sale_ends_at_0": "",
        "sale_ends_at_1": "",
        "per_buyer_limit": "5",
        "max_per_order": "5",
        "min_page_seconds": "0",
        "max_unpaid_per_buyer": "1",
        "delivery_kind": "keys",
        "stock_quantity": "0",
        "image": SimpleUploadedFile("new.jpg", jpeg_bytes(width=1000, height=1000), content_type="image/jpeg"),
        **inline_management_data(admin_client.get(reverse("admin:catalog_product_add")).context),
    }
    response = admin_client.post(reverse("admin:catalog_product_add"), data)

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    product = Product.objects.get(sku="NEW-1")
    assert (product.title_zh_hans, product.title_en) == ("新商品", "New product")
    with Image.open(product.image_card.path) as card, Image.open(product.image_page.path) as page:
        assert (card.size, page.size) == ((320, 320), (800, 800))
    answer = client.get("/api/v1/products/NEW-1", HTTP_ACCEPT_LANGUAGE="en").json()
    assert answer["title"] == "New product"
    assert answer["image_url"] == f"http://testserver{product.image_page.url}"


def jpeg_bytes(*, width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(png_bytes(width=width, height=height))).save(out, format="JPEG")
    return out.getvalue()


def test_clearing_the_image_brings_the_letter_tile_back(admin_client, client, media_root):
    product = ProductFactory(title="清除图片")
    post_image(admin_client, product, SimpleUploadedFile("a.png", png_bytes(width=500, height=500)))
    assert 'class="tile tile-image"' in client.get("/").content.decode()

    data = change_form_data(admin_client, product)
    data["image-clear"] = "on"
    response = admin_client.post(reverse("admin:catalog_product_change", args=[product.pk]), data)

    assert response.status_code == 302
    stored = Product.objects.get(pk=product.pk)
    assert (stored.image.name, stored.image_card.name, stored.image_page.name) == ("", "", "")
    home = client.get("/").content.decode()
    assert "tile-image" not in home and '<span class="tile" aria-hidden="true">清</span>' in home
