import pytest
from django.utils import translation

from apps.stock.redis import stock_redis
from apps.stock.redis_keys import stock_key


@pytest.fixture
def set_stock():
    """Set a product's Redis stock counter the way warm_stock would."""

    def _set(product, remaining):
        stock_redis().set(stock_key(product.id), remaining)

    return _set


@pytest.fixture(autouse=True)
def _default_language():
    # Templates and messages rendered outside a request follow LANGUAGE_CODE.
    with translation.override("zh-hans"):
        yield


@pytest.fixture
def media_root(settings, tmp_path):
    """Uploaded files go to this test's own folder."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"
