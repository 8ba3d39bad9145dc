"""A demo shop: categories, products with keys, a flash sale about to start,
and an admin account. Safe to run again: nothing is duplicated, the flash sale
moves to one minute from now and the admin gets a fresh password."""

import io
import secrets
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command, get_commands
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from apps.cardkeys.models import CardKey
from apps.cardkeys.services import cardkeys_import
from apps.catalog.models import Product
from apps.catalog.services import category_ensure, product_create, product_sale_window_set
from apps.core.management.base import ShopCommand
from cardshop.db_router import primary_reads

CATEGORIES = [
    # slug, Chinese name, English name, sort order
    ("game-top-up", "游戏充值", "Game top-up", 10),
    ("software", "软件授权", "Software licences", 20),
    ("membership", "会员卡", "Memberships", 30),
]

FLASH_SKU = "DEMO-FLASH-VIP-YEAR"

PRODUCTS = [
    # sku, category slug, (Chinese title, English title), price, keys, extra fields
    # (descriptions as description / description_en)
    (
        "DEMO-GENSHIN-60",
        "game-top-up",
        ("原神 创世结晶 60", "Genshin Impact 60 Genesis Crystals"),
        "6.00",
        40,
        {
            "description": "充值码，登录游戏后在商城兑换。",
            "description_en": "A top-up code: redeem it in the in-game shop.",
        },
    ),
    (
        "DEMO-STEAM-100",
        "game-top-up",
        ("Steam 钱包充值卡 ¥100", "Steam Wallet ¥100"),
        "98.00",
        8,
        {
            "description": "在 Steam 客户端“兑换钱包充值码”中使用。",
            "description_en": "Redeem under “Redeem a Steam Wallet Code”.",
        },
    ),
    (
        "DEMO-WIN11-PRO",
        "software",
        ("Windows 11 专业版激活码", "Windows 11 Pro key"),
        "99.00",
        25,
        {
            "description": "零售版密钥，一机一码。",
            "description_en": "Retail key for one PC.",
            "per_buyer_limit": 2,
            "max_per_order": 2,
        },
    ),
    (
        "DEMO-OFFICE-2021",
        "software",
        ("Office 2021 专业增强版", "Office 2021 Professional Plus"),
        "129.00",
        20,
        {"description": "永久授权，支持 Windows。", "description_en": "Perpetual licence for Windows."},
    ),
    (
        "DEMO-VIDEO-VIP-MONTH",
        "membership",
        ("视频会员月卡", "Video VIP, 1 month"),
        "15.00",
        60,
        {"description": "激活后 31 天有效。", "description_en": "Valid for 31 days after activation."},
    ),
    (
        FLASH_SKU,
        "membership",
        ("限时秒杀：年度会员 ¥1", "Flash sale: 1-year VIP for ¥1"),
        "1.00",
        100,
        {
            "description": "每人限购 1 件，先到先得。",
            "description_en": "One per buyer, while stocks last.",
            "per_buyer_limit": 1,
            "max_per_order": 1,
        },
    ),
]


def _demo_keys(count: int) -> bytes:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    lines = ("-".join("".join(secrets.choice(alphabet) for _ in range(5)) for _ in range(4)) for _ in range(count))
    return ("\n".join(lines) + "\n").encode()


def _flash_window():
    starts_at = timezone.now().replace(microsecond=0) + timedelta(minutes=1)
    return starts_at, starts_at + timedelta(hours=2)


class Command(ShopCommand):
    help = gettext_lazy(
        "Fill the shop with demo categories, products and keys, a flash sale starting in one minute, "
        "and an admin account (password printed). Running it again duplicates nothing."
    )

    def handle(self, *args, **options):
        # A command that writes reads its own writes: no replica lag here.
        with primary_reads():
            self._seed()

    def _seed(self):
        categories = {
            slug: category_ensure(slug=slug, name=name, name_en=name_en, sort_order=order)
            for slug, name, name_en, order in CATEGORIES
        }
        for sku, category_slug, titles, price, key_count, extra in PRODUCTS:
            product = self._product(sku, categories[category_slug], titles, price, extra)
            if not CardKey.objects.filter(product=product).exists():
                report = cardkeys_import(
                    product=product, source=io.BytesIO(_demo_keys(key_count)), file_name="demo.txt"
                )
                self.stdout.write(_("  %(sku)s: imported %(count)d keys") % {"sku": sku, "count": report.accepted})

        starts_at, ends_at = _flash_window()
        product_sale_window_set(product=Product.objects.get(sku=FLASH_SKU), starts_at=starts_at, ends_at=ends_at)

        password = self._admin_password()

        if "warm_stock" in get_commands():
            call_command("warm_stock", stdout=self.stdout)
        else:
            self.stdout.write(self.style.WARNING(_("warm_stock is not available: stock shows as paused until warmed.")))

        site = settings.SITE_URL.rstrip("/")
        self.stdout.write(self.style.SUCCESS(_("Demo shop ready.")))
        # scripts/run_all.sh shows the Username and Password lines again, in either language.
        starts = f"{timezone.localtime(starts_at):%Y-%m-%d %H:%M:%S %Z}"
        for line in (
            _("  Storefront:  %(url)s") % {"url": site + reverse("catalog:home")},
            _("  Flash sale:  %(url)s") % {"url": site + reverse("catalog:product", kwargs={"sku": FLASH_SKU})},
            _("               starts %(time)s") % {"time": starts},
            _("  Admin:       %(url)s") % {"url": site + reverse("admin:index")},
            _("  Username:    %(username)s") % {"username": "admin"},
            _("  Password:    %(password)s") % {"password": password},
        ):
            self.stdout.write(line)

    def _product(self, sku, category, titles, price, extra) -> Product:
        product = Product.objects.filter(sku=sku).first()
        if product is None:
            title, title_en = titles
            product = product_create(
                sku=sku, title=title, title_en=title_en, price=Decimal(price), category=category, **extra
            )
            self.stdout.write(_("  created product %(sku)s") % {"sku": sku})
        return product

    def _admin_password(self) -> str:
        """A fresh random password for `admin`, created if missing."""
        password = secrets.token_urlsafe(12)
        user, _created = get_user_model().objects.get_or_create(
            username="admin", defaults={"email": "admin@cardshop.local"}
        )
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(password)
        user.save()
        return password
