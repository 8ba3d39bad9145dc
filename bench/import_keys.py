"""Benchmark: import a generated key file through cardkeys_import.

    .venv/bin/python bench/import_keys.py [--lines 1000000] [--existing 0] [--profile]

Recreates its own database (BENCH_DATABASE_NAME, default cardshop_bench_import)
on the configured MariaDB server and uses its own Redis key prefix, so it never
touches the shop's data. Prints one JSON object: keys/s and peak RSS
(ru_maxrss) of the process, which includes Django itself.
"""

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import resource
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))


def _bench_database_url() -> tuple[str, str]:
    url = os.environ.get("DATABASE_URL", "mysql://root:@127.0.0.1:3306/cardshop")
    name = os.environ.get("BENCH_DATABASE_NAME", "cardshop_bench_import")
    return urlunsplit(urlsplit(url)._replace(path="/" + name)), name


def _recreate_database(name: str) -> None:
    import MySQLdb

    parts = urlsplit(os.environ["DATABASE_URL"])
    server = MySQLdb.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
    )
    with server.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    server.close()


def _write_keys(path: Path, lines: int, prefix: bytes = b"BENCH") -> None:
    # 24-character keys shaped like real top-up codes, distinct by construction.
    with open(path, "wb") as out:
        for start in range(0, lines, 10_000):
            out.write(
                b"".join(
                    b"%s-%08d-%09x\n" % (prefix, i, i * 2654435761 % (1 << 36))
                    for i in range(start, min(start + 10_000, lines))
                )
            )


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument(
        "--existing",
        type=int,
        default=0,
        help="first store this many other keys for the product (untimed), so each chunk is checked against them",
    )
    parser.add_argument("--profile", action="store_true", help="print the top functions by cumulative time to stderr")
    args = parser.parse_args()

    url, name = _bench_database_url()
    os.environ["DATABASE_URL"] = url
    os.environ["DATABASE_REPLICA_URL"] = url
    os.environ["REDIS_KEY_PREFIX"] = "cardshop-bench-import"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cardshop.settings.local")
    _recreate_database(name)

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from apps.cardkeys.services import cardkeys_import
    from apps.catalog.models import Product

    call_command("migrate", verbosity=0)
    product = Product.objects.using("default").create(sku="BENCH-IMPORT", title="Import benchmark", price="1.00")

    with tempfile.TemporaryDirectory() as tmp:
        if args.existing:
            earlier = Path(tmp) / "earlier.txt"
            _write_keys(earlier, args.existing, prefix=b"EARLY")
            with open(earlier, "rb") as source:
                cardkeys_import(product=product, source=source, file_name="earlier.txt")
        path = Path(tmp) / "keys.txt"
        _write_keys(path, args.lines)
        size = path.stat().st_size
        rss_before = _peak_rss_mb()
        profiler = cProfile.Profile() if args.profile else None
        with open(path, "rb") as source:
            cpu_started = time.process_time()
            started = time.perf_counter()
            if profiler:
                profiler.enable()
            report = cardkeys_import(product=product, source=source, file_name="keys.txt")
            if profiler:
                profiler.disable()
            seconds = time.perf_counter() - started
            cpu_seconds = time.process_time() - cpu_started

    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue(), file=sys.stderr)
    print(
        json.dumps(
            {
                "lines": args.lines,
                "existing_keys": args.existing,
                "file_mb": round(size / 1024 / 1024, 1),
                "accepted": report.accepted,
                "duplicates": report.duplicates,
                "invalid": report.invalid,
                "seconds": round(seconds, 2),
                # This process's CPU; the rest of `seconds` is mostly MariaDB working.
                "client_cpu_seconds": round(cpu_seconds, 2),
                "keys_per_s": round(report.accepted / seconds),
                "peak_rss_mb": _peak_rss_mb(),
                "rss_before_import_mb": rss_before,
                "chunk_size": settings.CARDKEY_IMPORT_CHUNK_SIZE,
                "machine": f"{platform.machine()} {os.cpu_count()} CPU, {platform.python_implementation()} {platform.python_version()}",
                "database": name,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
