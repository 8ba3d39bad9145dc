"""The volume phase's pairing arithmetic (bench/volume_paired.py): sides in
ABBA order, each figure's ratio the median of the rounds' volume ÷ empty,
"within 10 %" a median of 0.9–1.1, and the flash gates of every sale kept."""

from bench.volume_paired import gates_merged, paired_ratio, side_order


def test_sides_alternate_abba():
    assert [side for r in range(4) for side in side_order(r)] == [
        "empty",
        "full",
        "full",
        "empty",
        "empty",
        "full",
        "full",
        "empty",
    ]


def test_ratio_is_the_median_of_the_rounds_ratios_not_the_ratio_of_medians():
    # A drift that doubles both sides in round 2: each round's pair agrees within 5 %.
    row = paired_ratio([100.0, 200.0, 110.0], [105.0, 190.0, 110.0])
    assert row["ratio_rounds"] == [1.05, 0.95, 1.0]
    assert row["ratio"] == 1.0 and row["within_10pct"] is True
    assert (row["empty"], row["volume"]) == (110.0, 110.0)
    assert (row["empty_rounds"], row["volume_rounds"]) == ([100.0, 200.0, 110.0], [105.0, 190.0, 110.0])


def test_within_10pct_bounds_and_rounds_without_the_figure():
    assert paired_ratio([10.0, 10.0], [11.0, 11.0])["within_10pct"] is True
    assert paired_ratio([10.0, 10.0], [8.9, 8.9])["within_10pct"] is False
    assert paired_ratio([10.0, 10.0], [11.2, 11.2])["within_10pct"] is False
    # A flash figure exists only in the rounds with a flash sale; an empty side of 0 gives no ratio.
    row = paired_ratio([50.0, None, 0.0], [45.0, None, 3.0])
    assert row["ratio_rounds"] == [0.9] and row["empty_rounds"] == [50.0, 0.0]
    nothing = paired_ratio([None, None], [None, None])
    assert (nothing["ratio"], nothing["within_10pct"], nothing["ratio_rounds"]) == (0.0, False, [])


def test_gates_of_every_flash_sale_count():
    good = {
        "oversold": 0,
        "duplicates": 0,
        "paid_undelivered": 0,
        "sold": 100,
        "expected_sold": 100,
        "answered_never_recorded": 0,
        "sold_equals_min_keys_demand": True,
    }
    short = {**good, "sold": 99, "paid_undelivered": 1, "sold_equals_min_keys_demand": False}
    merged = gates_merged([good, short])
    assert merged["flashes"] == 2 and merged["paid_undelivered"] == 1 and merged["sold"] == 199
    assert merged["sold_equals_min_keys_demand"] is False
    assert gates_merged([good, good])["sold_equals_min_keys_demand"] is True


def test_each_side_stack_has_its_own_database_prefix_and_rabbitmq_vhost(monkeypatch):
    from bench.stack import StackConfig
    from bench.volume_paired import volume_config

    monkeypatch.delenv("BENCH_CELERY_BROKER_URL", raising=False)
    redis = volume_config(StackConfig(database="cardshop_bench_x", prefix="cardshop-bench-x"))
    # On the Redis broker the prefix separates the queues.
    assert (redis.database, redis.prefix, redis.broker_url) == (
        "cardshop_bench_x_volume",
        "cardshop-bench-x-volume",
        "",
    )
    empty = volume_config(StackConfig(database="cardshop_bench_x", prefix="cardshop-bench-x"), "empty")
    assert (empty.database, empty.prefix) == ("cardshop_bench_x_empty", "cardshop-bench-x-empty")
    amqp = volume_config(StackConfig(broker_url="amqp://guest:guest@127.0.0.1:5672/cardshop-bench"))
    assert amqp.broker_url == "amqp://guest:guest@127.0.0.1:5672/cardshop-bench-volume"
    monkeypatch.setenv("BENCH_CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    assert volume_config(StackConfig()).broker_url == "amqp://guest:guest@127.0.0.1:5672/%2F-volume"
