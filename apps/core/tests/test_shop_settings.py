"""The shop settings (issue 13): one record, edited in the admin, cached and
dropped on save; the storefront shows the name, logo, banner (only inside its
window), footer and contact in the buyer's language; the admin's header and
title carry the shop name."""

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone, translation
from PIL import Image

from apps.core.models import ShopSettings
from apps.core.selectors import ShopInfo, shop_settings_get, shop_settings_memo_forget
from testing.images import png_bytes

pytestmark = pytest.mark.django_db

EN = {"HTTP_ACCEPT_LANGUAGE": "en"}
ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9"}


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


def shop(**fields) -> ShopSettings:
    row = ShopSettings(pk=ShopSettings.SINGLETON_PK, **fields)
    row.save()
    return row


def form_data(**fields) -> dict:
    """The settings form's fields, all empty unless given."""
    data = {f"{name}_{lang}": "" for name in ("name", "banner", "footer", "contact") for lang in ("zh_hans", "en")}
    data.update(banner_starts_at_0="", banner_starts_at_1="", banner_ends_at_0="", banner_ends_at_1="")
    data.update(fields)
    return data


def test_without_a_saved_record_the_defaults_show(client):
    ShopSettings.objects.all().delete()
    zh = client.get("/", **ZH).content.decode()
    en = client.get("/", **EN).content.decode()
    assert '<span class="brand-name">卡密商城</span>' in zh
    assert '<span class="brand-name">Card Key Shop</span>' in en
    assert "shop-banner" not in zh and "shop-footer" not in zh


def test_name_banner_footer_and_contact_show_in_the_buyers_language(client):
    shop(
        name_zh_hans="星辰卡铺",
        name_en="Star Cards",
        banner_zh_hans="双十一全场九折",
        banner_en="10% off everything this week",
        footer_zh_hans="24 小时自动发货",
        footer_en="Automatic delivery, day and night",
        contact_zh_hans="QQ：12345",
        contact_en="Telegram: @starcards",
    )
    zh = client.get("/", **ZH).content.decode()
    en = client.get("/", **EN).content.decode()
    for text in ("星辰卡铺", "双十一全场九折", "24 小时自动发货", "QQ：12345"):
        assert text in zh and text not in en
    for text in ("Star Cards", "10% off everything this week", "Automatic delivery, day and night", "@starcards"):
        assert text in en and text not in zh
    assert "<title>星辰卡铺</title>" in zh


def test_the_banner_shows_only_inside_its_window(client):
    now = timezone.now()
    row = shop(banner_zh_hans="限时公告", banner_starts_at=now + timedelta(hours=1))
    assert "限时公告" not in client.get("/", **ZH).content.decode()
    row.banner_starts_at, row.banner_ends_at = now - timedelta(hours=1), now + timedelta(hours=1)
    row.save()
    assert "限时公告" in client.get("/", **ZH).content.decode()
    row.banner_ends_at = now - timedelta(minutes=1)
    row.save()
    assert "限时公告" not in client.get("/", **ZH).content.decode()
    info = ShopInfo(banner_zh_hans="x", banner_starts_at=now, banner_ends_at=now + timedelta(minutes=5))
    with translation.override("zh-hans"):
        assert (
            info.banner_at(now - timedelta(seconds=1)),
            info.banner_at(now),
            info.banner_at(info.banner_ends_at),
        ) == (
            "",
            "x",
            "",
        )


def test_the_settings_are_cached_and_a_save_drops_the_copy(django_assert_num_queries):
    row = shop(name_zh_hans="旧名")
    with translation.override("zh-hans"):
        assert shop_settings_get().name == "旧名"
        with django_assert_num_queries(0):
            assert shop_settings_get().name == "旧名"
        row.name_zh_hans = "新名"
        row.save()
        assert shop_settings_get().name == "新名"


def test_redis_holds_the_cached_copy(django_assert_num_queries):
    shop(name_zh_hans="缓存")
    shop_settings_get()
    shop_settings_memo_forget()  # as in another process: only Redis has it
    with django_assert_num_queries(0), translation.override("zh-hans"):
        assert shop_settings_get().name == "缓存"


def test_the_admin_header_and_title_carry_the_shop_name(admin_client):
    shop(name_zh_hans="星辰卡铺", name_en="Star Cards")
    zh = admin_client.get("/admin/", **ZH).content.decode()
    assert '<a href="/admin/">星辰卡铺</a>' in zh and "| 星辰卡铺</title>" in zh
    assert "Django 管理" not in zh and "Django administration" not in zh
    en = admin_client.get("/admin/", **EN).content.decode()
    assert "Star Cards" in en


def test_the_admin_list_opens_the_one_record(admin_client):
    ShopSettings.objects.all().delete()
    changelist = reverse("admin:core_shopsettings_changelist")
    assert admin_client.get(changelist)["Location"] == reverse("admin:core_shopsettings_add")
    response = admin_client.post(reverse("admin:core_shopsettings_add"), form_data(name_zh_hans="新店"))
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    assert list(ShopSettings.objects.values_list("pk", "name_zh_hans")) == [(1, "新店")]
    change = reverse("admin:core_shopsettings_change", args=[1])
    assert admin_client.get(changelist)["Location"] == change
    assert admin_client.get(reverse("admin:core_shopsettings_add")).status_code == 403
    assert admin_client.post(reverse("admin:core_shopsettings_delete", args=[1])).status_code == 403


def test_a_logo_upload_gets_its_header_copy(admin_client, client, media_root):
    shop()
    change = reverse("admin:core_shopsettings_change", args=[1])
    logo = SimpleUploadedFile("logo.png", png_bytes(width=600, height=300), content_type="image/png")
    response = admin_client.post(change, {**form_data(name_zh_hans="有标志"), "logo": logo})
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    row = ShopSettings.objects.get()
    with Image.open(row.logo_small.path) as small:
        assert (small.format, small.size) == ("WEBP", (96, 48))
    home = client.get("/", **ZH).content.decode()
    assert f'src="{row.logo_small.url}"' in home


def test_a_banner_that_ends_before_it_starts_is_refused(admin_client):
    shop(banner_zh_hans="公告")
    change = reverse("admin:core_shopsettings_change", args=[1])
    data = form_data(
        banner_zh_hans="新公告",
        banner_starts_at_0="2030-01-02",
        banner_starts_at_1="10:00:00",
        banner_ends_at_0="2030-01-01",
        banner_ends_at_1="10:00:00",
    )
    response = admin_client.post(change, data, **ZH)
    assert response.status_code == 200
    assert "横幅的结束时间必须晚于开始时间" in response.content.decode()
    assert ShopSettings.objects.get().banner_zh_hans == "公告"


def test_a_non_image_logo_is_refused_and_changes_nothing(admin_client, media_root):
    shop(name_zh_hans="原名")
    change = reverse("admin:core_shopsettings_change", args=[1])
    bad = SimpleUploadedFile("logo.png", b"not an image at all")
    response = admin_client.post(change, {**form_data(name_zh_hans="新名"), "logo": bad}, **ZH)
    assert response.status_code == 200
    assert "请上传有效图片" in response.content.decode()
    row = ShopSettings.objects.get()
    assert (row.name_zh_hans, row.logo.name) == ("原名", "")
