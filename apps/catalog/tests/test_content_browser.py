"""The merchant's content in headless Chromium (Debian's /usr/bin/chromium,
driven by Playwright), served by gunicorn as production runs it: the merchant
uploads a product image and sets the shop name and banner in the admin, then
a buyer sees the image on the product card and page, the shop's name and
banner, and the title in their own language only, at desktop and phone widths
(issue 13). Screenshots go to test-output/ for a person to look at."""

import pytest
from playwright.sync_api import expect

from apps.catalog.models import Product
from apps.core.models import ShopSettings
from apps.orders.tests.processes import GunicornServer
from apps.orders.tests.support import product_with_keys
from testing.browser import admin_page, loaded_image_width
from testing.images import png_bytes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
LOCALES = {"zh-hans": "zh-CN", "en": "en-US"}


def test_merchant_uploads_an_image_and_buyers_see_it_in_their_language(browser, static_served, screenshots, tmp_path):
    product = product_with_keys(keys=5, title="原神 创世结晶 60")
    plain = product_with_keys(keys=5, title="无图商品")
    picture = tmp_path / "genshin.png"
    picture.write_bytes(png_bytes(width=1600, height=1200, color=(64, 120, 220)))
    media = tmp_path / "media"
    server = GunicornServer(workers=1, threads=4, extra_env={**static_served, "MEDIA_ROOT": str(media)}).start()
    try:
        # The merchant: an English title and the image on the product's form, then the shop settings.
        admin = admin_page(
            browser, site_url=server.url, next_path=f"/admin/catalog/product/{product.pk}/change/", viewport=DESKTOP
        )
        admin.fill("#id_title_en", "Genshin Impact 60 Genesis Crystals")
        admin.set_input_files("#id_image", str(picture))
        admin.click("input[name=_continue]")
        expect(admin.locator(".messagelist .success")).to_be_visible()
        preview = admin.locator(".field-image_preview img")
        expect(preview).to_be_visible()
        admin.screenshot(path=str(screenshots / "content-admin-product-image.png"), full_page=True)

        admin.goto(f"{server.url}/admin/core/shopsettings/")
        admin.fill("#id_name_zh_hans", "星辰卡铺")
        admin.fill("#id_name_en", "Star Cards")
        admin.fill("#id_banner_zh_hans", "双十一：全场九折")
        admin.fill("#id_banner_en", "This week: 10% off everything")
        admin.fill("#id_contact_zh_hans", "QQ：12345")
        admin.fill("#id_contact_en", "Telegram: @starcards")
        admin.click("input[name=_save]")
        expect(admin.locator("#site-name")).to_have_text("Star Cards")
        admin.screenshot(path=str(screenshots / "content-admin-header.png"))

        stored = Product.objects.get(pk=product.pk)
        assert stored.image_card and stored.image_page
        assert ShopSettings.objects.get().name_en == "Star Cards"

        expected = {
            "zh-hans": {
                "title": "原神 创世结晶 60",
                "other": "Genshin",
                "name": "星辰卡铺",
                "banner": "双十一：全场九折",
            },
            "en": {
                "title": "Genshin Impact 60 Genesis Crystals",
                "other": "原神",
                "name": "Star Cards",
                "banner": "This week: 10% off everything",
            },
        }
        for language, texts in expected.items():
            for width_name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
                page = browser.new_context(locale=LOCALES[language], viewport=viewport).new_page()
                page.goto(server.url + "/")
                expect(page.locator(".brand-name")).to_have_text(texts["name"])
                expect(page.locator(".shop-banner")).to_contain_text(texts["banner"])

                card = page.locator(".card", has=page.locator(f'a[href="/p/{product.sku}"]'))
                expect(card.locator(".card-title")).to_have_text(texts["title"])
                assert texts["other"] not in page.locator("main").inner_text()
                image = card.locator("img.tile-image")
                expect(image).to_be_visible()
                # Loaded (not a broken image), and inside its card, beside the title.
                assert loaded_image_width(image) == 320
                box, card_box = image.bounding_box(), card.bounding_box()
                assert box["width"] >= 60 and box["height"] >= 60
                assert card_box["x"] <= box["x"] and box["x"] + box["width"] <= card_box["x"] + card_box["width"]
                assert card_box["y"] <= box["y"] and box["y"] + box["height"] <= card_box["y"] + card_box["height"]
                # The product without an image keeps its letter tile.
                plain_card = page.locator(".card", has=page.locator(f'a[href="/p/{plain.sku}"]'))
                expect(plain_card.locator("span.tile")).to_have_text("无")
                expect(plain_card.locator("img")).to_have_count(0)
                page.screenshot(path=str(screenshots / f"content-home-{language}-{width_name}.png"), full_page=True)

                page.goto(f"{server.url}/p/{product.sku}")
                expect(page.locator("h1")).to_have_text(texts["title"])
                big = page.locator("img.product-image")
                expect(big).to_be_visible()
                assert loaded_image_width(big) == 800
                assert big.bounding_box()["width"] <= viewport["width"]
                page.screenshot(path=str(screenshots / f"content-product-{language}-{width_name}.png"))
                page.context.close()
    finally:
        server.stop()
