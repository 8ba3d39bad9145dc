from apps.orders.tests.conftest import published  # noqa: F401  (the purchase path's fixture)
