import pytest
from django.db import connections

from apps.catalog.models import Product
from apps.catalog.tests.factories import ProductFactory
from apps.orders.models import Order
from cardshop.db_router import PrimaryReplicaRouter, primary_reads

router = PrimaryReplicaRouter()


def test_catalog_reads_go_to_the_replica():
    assert router.db_for_read(Product) == "replica"


def test_order_reads_stay_on_the_primary():
    assert router.db_for_read(Order) == "default"


def test_every_write_goes_to_the_primary():
    assert router.db_for_write(Product) == "default"
    assert router.db_for_write(Order) == "default"


def test_primary_reads_pins_catalog_reads():
    with primary_reads():
        assert router.db_for_read(Product) == "default"
    assert router.db_for_read(Product) == "replica"


def test_migrations_run_on_the_primary_only():
    assert router.allow_migrate("default", "catalog")
    assert not router.allow_migrate("replica", "catalog")


@pytest.mark.django_db(transaction=True, databases=["default", "replica"])
def test_queryset_uses_replica_alias_and_mirror_sees_the_committed_write():
    ProductFactory(sku="R1")
    qs = Product.objects.filter(sku="R1")
    assert qs.db == "replica"
    assert qs.exists()  # the test replica mirrors default


def test_post_request_reads_from_the_primary():
    seen = []
    original = router.db_for_read

    def spy(model, **hints):
        alias = original(model, **hints)
        seen.append(alias)
        return alias

    from apps.core.middleware import PrimaryReadsForWritesMiddleware

    def view(request):
        return spy(Product)

    middleware = PrimaryReadsForWritesMiddleware(view)

    class Req:
        method = "POST"

    assert middleware(Req()) == "default"
    Req.method = "GET"
    assert middleware(Req()) == "replica"
    assert connections["replica"].settings_dict["NAME"] == connections["default"].settings_dict["NAME"]


# --- with a real replica configured (REPLICA_ENABLED): read-your-writes, the lag verdict, the fallback


@pytest.fixture
def replica_on(settings, monkeypatch):
    """A replica configured, its status answered by `status` (a dict, None for
    "not a replica", or an exception to raise), each check counted."""
    from apps.core import replica

    settings.REPLICA_ENABLED = True
    settings.REPLICA_MAX_LAG_SECONDS = 5
    settings.REPLICA_CHECK_SECONDS = 60
    state = {"status": {"Slave_IO_Running": "Yes", "Slave_SQL_Running": "Yes", "Seconds_Behind_Master": 0}, "checks": 0}

    def status():
        state["checks"] += 1
        if isinstance(state["status"], Exception):
            raise state["status"]
        return state["status"]

    monkeypatch.setattr(replica, "_replica_status", status)
    replica.replica_health.forget()
    yield state
    replica.replica_health.forget()


def _alias_seen(request, *, view=None):
    from apps.core.middleware import PrimaryReadsForWritesMiddleware

    seen = []

    def record(request):
        seen.append(router.db_for_read(Product))
        from django.http import HttpResponse

        return HttpResponse("ok")

    response = PrimaryReadsForWritesMiddleware(view or record)(request)
    return seen[0], response


def test_with_a_replica_only_a_reader_who_has_not_written_reads_it(replica_on, rf, settings):
    from apps.core.middleware import WROTE_COOKIE

    alias, response = _alias_seen(rf.get("/"))
    assert alias == "replica" and WROTE_COOKIE not in response.cookies
    alias, response = _alias_seen(rf.post("/admin/catalog/product/1/change/"))
    assert alias == "default"
    mark = response.cookies[WROTE_COOKIE]
    assert mark["max-age"] == settings.REPLICA_READ_YOUR_WRITES_SECONDS and mark["httponly"]

    after_write = rf.get("/")
    after_write.COOKIES[WROTE_COOKIE] = mark.value
    assert _alias_seen(after_write)[0] == "default"
    forged = rf.get("/")
    forged.COOKIES[WROTE_COOKIE] = mark.value[:-2] + "xx"
    assert _alias_seen(forged)[0] == "replica"


def test_the_read_your_writes_mark_expires(replica_on, rf, settings):
    from apps.core.middleware import WROTE_COOKIE

    settings.REPLICA_READ_YOUR_WRITES_SECONDS = 1
    mark = _alias_seen(rf.post("/x"))[1].cookies[WROTE_COOKIE].value
    request = rf.get("/")
    request.COOKIES[WROTE_COOKIE] = mark
    assert _alias_seen(request)[0] == "default"
    import time

    time.sleep(2.1)  # signatures carry whole seconds
    request = rf.get("/")
    request.COOKIES[WROTE_COOKIE] = mark
    assert _alias_seen(request)[0] == "replica"


def test_with_a_replica_reads_outside_a_request_go_to_the_primary(replica_on):
    # Celery tasks, management commands and shells act on what they read.
    assert router.db_for_read(Product) == "default"


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        ({"Slave_IO_Running": "Yes", "Slave_SQL_Running": "Yes", "Seconds_Behind_Master": 3}, "ok"),
        ({"Slave_IO_Running": "Yes", "Slave_SQL_Running": "Yes", "Seconds_Behind_Master": 9}, "lagging"),
        ({"Slave_IO_Running": "Yes", "Slave_SQL_Running": "No", "Seconds_Behind_Master": None}, "stopped"),
        ({"Slave_IO_Running": "Connecting", "Slave_SQL_Running": "Yes", "Seconds_Behind_Master": None}, "stopped"),
        (None, "stopped"),
        (OSError("connection refused"), "unreachable"),
    ],
)
def test_an_unfit_replica_sends_reads_to_the_primary(replica_on, rf, status, verdict):
    from apps.core import metrics
    from apps.core.replica import replica_health

    replica_on["status"] = status
    fallbacks = metrics.REPLICA_FALLBACK_READS._value.get()
    checks = metrics.REPLICA_CHECKS.labels(verdict)._value.get()
    alias = _alias_seen(rf.get("/"))[0]
    assert replica_health.verdict().reason == verdict
    assert alias == ("replica" if verdict == "ok" else "default")
    assert metrics.REPLICA_FALLBACK_READS._value.get() == fallbacks + (verdict != "ok")
    assert metrics.REPLICA_CHECKS.labels(verdict)._value.get() == checks + 1
    in_use = metrics.REPLICA_IN_USE.labels("replica")._value.get()
    assert in_use == (1 if verdict == "ok" else 0)


def test_the_verdict_is_kept_for_the_check_interval(replica_on, rf, settings):
    from apps.core.replica import replica_health

    for _ in range(20):
        _alias_seen(rf.get("/"))
    assert replica_on["checks"] == 1
    replica_on["status"] = OSError("gone")
    assert _alias_seen(rf.get("/"))[0] == "replica"  # not asked again yet
    settings.REPLICA_CHECK_SECONDS = 0
    assert _alias_seen(rf.get("/"))[0] == "default"
    assert replica_health.verdict().reason == "unreachable"


def test_with_a_replica_the_admin_reads_the_primary(replica_on, rf):
    # A change form built from a lagging replica would save old values back.
    assert _alias_seen(rf.get("/admin/catalog/product/1/change/"))[0] == "default"
    assert _alias_seen(rf.get("/p/SKU-1"))[0] == "replica"


@pytest.mark.django_db(transaction=True, databases=["default", "replica"])  # not pinned by conftest.py
def test_with_a_replica_a_payment_notification_by_get_reads_the_primary(replica_on, client, monkeypatch):
    """epay notifies by GET, and the notification writes (the order paid):
    what it reads to decide must be the primary's, as for any write."""
    from apps.payments import views
    from apps.payments.exceptions import NotificationIgnored

    seen = []

    def apply(provider, request):
        seen.append(router.db_for_read(Product))
        raise NotificationIgnored()

    monkeypatch.setattr(views, "_notifies_by_get", lambda name: True)
    monkeypatch.setattr(views, "_notification_apply", apply)
    response = client.get("/payments/webhook/epay?out_trade_no=X")
    assert response.status_code == 200, response.content
    assert seen == ["default"]
    assert client.get("/p/NO-SUCH-SKU").status_code == 404  # a page beside it still reads the replica


def test_gtid_positions_compare_per_domain():
    from apps.core.replica import gtid_position_behind, gtid_position_parse

    assert gtid_position_parse("0-1-15,1-2-7") == {0: 15, 1: 7}
    assert gtid_position_parse("") == {}
    assert gtid_position_behind({0: 14}, {0: 15})
    assert not gtid_position_behind({0: 15, 1: 3}, {0: 15})
    assert gtid_position_behind({0: 15}, {0: 15, 1: 1})  # a domain it never saw


def test_the_gtid_watch_counts_the_lag_from_the_check_that_first_saw_the_replica_behind(monkeypatch):
    from apps.core import replica

    primary = {"position": "0-1-10"}
    monkeypatch.setattr(replica, "_primary_gtid_position", lambda: primary["position"])
    watch = replica._GtidWatch()
    assert watch.behind_seconds("0-1-10", now=100.0) == 0.0  # caught up
    primary["position"] = "0-1-12"
    assert watch.behind_seconds("0-1-10", now=101.0) == 0.0  # behind since now
    assert watch.behind_seconds("0-1-11", now=104.0) == 3.0  # still lacks 12
    primary["position"] = "0-1-13"
    assert watch.behind_seconds("0-1-12", now=105.0) == 0.0  # reached it; 13 is the next target
    assert watch.behind_seconds("0-1-12", now=111.5) == 6.5
    assert watch.behind_seconds("0-1-13", now=112.0) == 0.0
    assert watch.target is None
    assert watch.behind_seconds(None, now=113.0) is None  # no position reported: SBM alone


def test_a_replica_whose_seconds_behind_master_says_0_but_lacks_the_primarys_writes_is_lagging(
    replica_on, monkeypatch, settings
):
    from apps.core import replica

    monkeypatch.setattr(replica, "_primary_gtid_position", lambda: "0-1-20")
    replica_on["status"] = {
        "Slave_IO_Running": "Yes",
        "Slave_SQL_Running": "Yes",
        "Seconds_Behind_Master": 0,
        "gtid_slave_pos": "0-1-19",
    }
    settings.REPLICA_CHECK_SECONDS = 0
    settings.REPLICA_MAX_LAG_SECONDS = 0.2
    assert replica.replica_health.verdict().reason == "ok"  # behind from now on
    import time

    time.sleep(0.3)
    verdict = replica.replica_health.verdict()
    assert (verdict.reason, verdict.lag_seconds > 0.2) == ("lagging", True)
    replica_on["status"] = {**replica_on["status"], "gtid_slave_pos": "0-1-20"}
    assert replica.replica_health.verdict().reason == "ok"
