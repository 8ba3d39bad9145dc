"""Settings shared by every environment. Each value comes from the environment
with a default that works on a developer machine (see .env.example)."""

import ipaddress
from datetime import timedelta

from cardshop.broker import broker_queues, broker_transport_options
from cardshop.env import BASE_DIR, env

# Only for local development; production.py refuses to start with this value.
INSECURE_DEV_SECRET_KEY = "dev-insecure-change-me"
# A development-only Fernet key; production.py refuses it too.
INSECURE_DEV_ENCRYPTION_KEY = "ZGV2LW9ubHktY2FyZHNob3Ata2V5LWRvLW5vdC11c2U="
INSECURE_DEV_FINGERPRINT_KEY = "dev-only-fingerprint-key"

SECRET_KEY = env("DJANGO_SECRET_KEY", default=INSECURE_DEV_SECRET_KEY)
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # Per-language model fields (title_zh_hans, title_en); it must come before the admin.
    "modeltranslation",
    # django.contrib.admin, with the shop's admin site (apps.core.admin_site) as admin.site.
    "apps.core.admin_apps.ShopAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from here rather than a CDN
    "captcha",
    "apps.core.admin_apps.ShopAxesConfig",  # django-axes, with a translated name
    "django_otp",
    "apps.core.admin_apps.ShopTOTPConfig",  # django_otp.plugins.otp_totp, with a translated name
    "apps.core",
    "apps.catalog",
    "apps.stock",
    "apps.cardkeys",
    "apps.orders",
    "apps.payments",
    "apps.coupons",
    "apps.monitoring",
    "apps.notifications",
]

MIDDLEWARE = [
    "apps.core.logging.RequestIdMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user.is_verified(): whether this session passed the admin's second factor.
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "apps.core.middleware.PrimaryReadsForWritesMiddleware",
    # Innermost, so it can swap a locked-out login's page for the lockout page.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "cardshop.urls"
WSGI_APPLICATION = "cardshop.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.stock.overload.overload_context",
                "apps.core.context_processors.shop_settings",
            ],
        },
    },
]

# --- Databases: MariaDB primary for every write, a replica alias for catalog reads.
DATABASE_URL = env("DATABASE_URL", default="mysql://root:@127.0.0.1:3306/cardshop")
DATABASE_REPLICA_URL = env("DATABASE_REPLICA_URL", default=DATABASE_URL)


def _mariadb(url: str) -> dict:
    config = env.db_url_config(url)
    config.setdefault("OPTIONS", {})
    config["OPTIONS"].update(
        {
            "charset": "utf8mb4",
            # READ COMMITTED: key claims with SKIP LOCKED must not take gap locks.
            "isolation_level": "read committed",
            "init_command": "SET sql_mode='STRICT_TRANS_TABLES'",
        }
    )
    config["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    config["CONN_HEALTH_CHECKS"] = True
    config["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}
    return config


DATABASES = {"default": _mariadb(DATABASE_URL), "replica": _mariadb(DATABASE_REPLICA_URL)}
DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
DATABASE_ROUTERS = ["cardshop.db_router.PrimaryReplicaRouter"]
# A real replica (docs/database-replica.md): its lag is watched, reads fall
# back to the primary past REPLICA_MAX_LAG_SECONDS or while it is down, and a
# browser that wrote reads the primary for REPLICA_READ_YOUR_WRITES_SECONDS.
# Off when DATABASE_REPLICA_URL is unset (the replica alias is the primary).
REPLICA_ENABLED = DATABASE_REPLICA_URL != DATABASE_URL
REPLICA_MAX_LAG_SECONDS = env.float("REPLICA_MAX_LAG_SECONDS", default=5.0)
# How often each process asks the replica for its lag (one connection, SHOW SLAVE STATUS).
REPLICA_CHECK_SECONDS = env.float("REPLICA_CHECK_SECONDS", default=2.0)
# Longer than the lag allowed plus one check: by then the replica has the write.
REPLICA_READ_YOUR_WRITES_SECONDS = env.int("REPLICA_READ_YOUR_WRITES_SECONDS", default=10)
# A dead replica host must not hold a request for the driver's default timeout.
REPLICA_CONNECT_TIMEOUT_SECONDS = env.int("REPLICA_CONNECT_TIMEOUT_SECONDS", default=1)
# A replica that accepts connections but does not answer (a frozen host, a
# partition that drops packets) holds a read, or the health check of a
# persistent connection, this long; the read then runs on the primary.
REPLICA_QUERY_TIMEOUT_SECONDS = env.int("REPLICA_QUERY_TIMEOUT_SECONDS", default=5)
if REPLICA_ENABLED:
    DATABASES["replica"]["ENGINE"] = "cardshop.replica_backend"
    DATABASES["replica"]["OPTIONS"]["connect_timeout"] = REPLICA_CONNECT_TIMEOUT_SECONDS
    DATABASES["replica"]["OPTIONS"]["read_timeout"] = REPLICA_QUERY_TIMEOUT_SECONDS
    DATABASES["replica"]["OPTIONS"]["write_timeout"] = REPLICA_QUERY_TIMEOUT_SECONDS
ATOMIC_REQUESTS = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: the gate (stock, reservations) and the cache (and the broker on a laptop).
REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")
# Every Redis key this process writes starts with this, so tests, benchmarks and
# the demo can share one server without touching each other's data.
REDIS_KEY_PREFIX = env("REDIS_KEY_PREFIX", default="cardshop")
# The stock gate's Redis (stock counters, reservations, persist queues, coupon
# uses, mail claims: everything whose loss matters for a sale; apps.stock.redis).
# Unset, it is REDIS_URL (one Redis for a laptop). Production runs it with
# deploy/redis/redis.conf; GATE_REDIS_CLUSTER=true speaks Redis Cluster to it,
# sharding products by their hash tag (docs/gate-cluster.md). For a cluster the
# URL may list several nodes, comma-separated (list every master: a process
# starting while one is down finds the cluster through another).
GATE_REDIS_URL = env("GATE_REDIS_URL", default=REDIS_URL)
GATE_REDIS_CLUSTER = env.bool("GATE_REDIS_CLUSTER", default=False)

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": REDIS_KEY_PREFIX + ":cache",
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SOCKET_CONNECT_TIMEOUT": 1,
            "SOCKET_TIMEOUT": 1,
        },
    }
}
# Product info is cached this long; a merchant's edit invalidates it at once.
PRODUCT_CACHE_TTL = env.int("PRODUCT_CACHE_TTL", default=300)
# Checkout reuses a process's copy of product info this long (the sale's rules
# themselves are read by the checkout script from Redis on every call).
CHECKOUT_PRODUCT_MEMO_SECONDS = env.float("CHECKOUT_PRODUCT_MEMO_SECONDS", default=2.0)
# While Redis is down each web process serves its last good copy of product
# info and listings this long before reading MariaDB again (apps.core.last_good).
CATALOG_FALLBACK_SECONDS = env.int("CATALOG_FALLBACK_SECONDS", default=300)

# Sessions live in Redis only: the purchase form's session write must not be a
# MariaDB write on the checkout path.
# apps.core.sessions: the cache store, but a Redis outage loses a session write
# instead of answering 500.
SESSION_ENGINE = "apps.core.sessions"

# --- Celery
# RabbitMQ (amqp://) in production, docker-compose and the tests: the broker is
# not the gate, so losing the gate Redis loses no queued task and never takes
# the worker's connection with it. A Redis database (redis://) serves a laptop.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="amqp://guest:guest@127.0.0.1:5672//")
CELERY_RESULT_BACKEND = None
# A task is acknowledged when it has run, not when it was taken: a worker that
# dies mid-task (or whose pool process is killed) leaves it to be delivered again.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# On a lost broker connection RabbitMQ hands the unacknowledged tasks out
# again. The copies running here finish rather than being killed: every task
# is safe to run twice (fences, SKIP LOCKED, the mail claims), while killing a
# mail task between the SMTP server's acceptance and its "sent" mark would
# send that mail twice on every broker blip, not only on a crash.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A worker keeps reconnecting to a broker that is down or restarting, at start
# and later, however long that takes, instead of exiting.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# With acks_late on the Redis broker, a task whose worker died is redelivered
# after this many seconds (ignored on RabbitMQ, which redelivers at once).
BROKER_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=300)
CELERY_BROKER_TRANSPORT_OPTIONS = broker_transport_options(
    url=CELERY_BROKER_URL, key_prefix=REDIS_KEY_PREFIX, visibility_timeout=BROKER_VISIBILITY_TIMEOUT
)
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# One queue per kind of work, so a deep fulfilment or mail backlog never holds
# up persistence of new reservations (buyers cannot pay an order that is not
# persisted yet). A worker consumes every queue listed here unless started with
# -Q; a deployment may give each queue workers of its own.
CELERY_QUEUE_GATE = "gate"  # persistence, expiry, warm-up, reconcile, overload
CELERY_QUEUE_FULFIL = "fulfil"
CELERY_QUEUE_PAYMENTS = "payments"
CELERY_QUEUE_MAIL = "mail"
# The merchant's notifications: apart from the buyers' mail, whose queue depth
# pauses checkout (apps/stock/overload.py) and must not count them.
CELERY_QUEUE_NOTIFY = "notify"
CELERY_TASK_DEFAULT_QUEUE = "celery"
TASK_QUEUE_NAMES = [
    "celery",
    CELERY_QUEUE_GATE,
    CELERY_QUEUE_FULFIL,
    CELERY_QUEUE_PAYMENTS,
    CELERY_QUEUE_MAIL,
    CELERY_QUEUE_NOTIFY,
]
CELERY_TASK_QUEUES = broker_queues(url=CELERY_BROKER_URL, names=TASK_QUEUE_NAMES)
CELERY_TASK_ROUTES = {
    "apps.orders.tasks.persist_reservations_task": {"queue": CELERY_QUEUE_GATE},
    "apps.orders.tasks.expire_reservations_task": {"queue": CELERY_QUEUE_GATE},
    "apps.orders.tasks.reconcile_task": {"queue": CELERY_QUEUE_GATE},
    # It waits on providers' answers: never in the gate queue's way.
    "apps.orders.tasks.payments_query_expiring_task": {"queue": CELERY_QUEUE_PAYMENTS},
    "apps.stock.tasks.*": {"queue": CELERY_QUEUE_GATE},
    "apps.orders.tasks.fulfil_order_task": {"queue": CELERY_QUEUE_FULFIL},
    "apps.payments.*": {"queue": CELERY_QUEUE_PAYMENTS},
    "apps.orders.tasks.send_order_keys_email_task": {"queue": CELERY_QUEUE_MAIL},
    "apps.orders.tasks.send_order_keys_emails_task": {"queue": CELERY_QUEUE_MAIL},
    # They wait on webhooks, the Bot API and mail servers: never in front of fulfilment or the buyers' mail.
    "apps.notifications.tasks.*": {"queue": CELERY_QUEUE_NOTIFY},
}

# --- Card keys: encrypted at rest with keys that are not SECRET_KEY.
# Comma-separated Fernet keys; the first encrypts, all decrypt (rotation).
CARDKEY_ENCRYPTION_KEYS = env.list("CARDKEY_ENCRYPTION_KEYS", default=[INSECURE_DEV_ENCRYPTION_KEY])
# HMAC key for the duplicate-detection fingerprint. It must never change once keys
# are stored (fingerprints would no longer match), so it is separate from the
# rotating encryption keys.
CARDKEY_FINGERPRINT_KEY = env("CARDKEY_FINGERPRINT_KEY", default=INSECURE_DEV_FINGERPRINT_KEY)
# HMAC key of the orders' access tokens (apps.orders.identity.access_token_for).
# Empty: derived from CARDKEY_FINGERPRINT_KEY. Changing it keeps every order
# open to its token (only hashes are checked), but orders issued before and then
# lost with Redis answer a plain 404 instead of "not placed, buy again".
ORDER_TOKEN_KEY = env("ORDER_TOKEN_KEY", default="")
CARDKEY_MAX_LENGTH = 512
CARDKEY_IMPORT_CHUNK_SIZE = env.int("CARDKEY_IMPORT_CHUNK_SIZE", default=5000)
# How long an import waits for another import of the same product to finish.
CARDKEY_IMPORT_LOCK_TIMEOUT = env.int("CARDKEY_IMPORT_LOCK_TIMEOUT", default=600)
# Uploads above this many bytes are refused before reading.
CARDKEY_IMPORT_MAX_BYTES = env.int("CARDKEY_IMPORT_MAX_BYTES", default=200 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=20 * 1024 * 1024)
# An admin import job whose worker died is started again by the next delivery
# of its message, at most this many times in all (a file that kills its worker
# is not retried forever).
CARDKEY_IMPORT_JOB_MAX_ATTEMPTS = env.int("CARDKEY_IMPORT_JOB_MAX_ATTEMPTS", default=3)
# An unfinished import job whose heartbeat (a running one beats every second)
# stopped this long ago is failed and its staged upload deleted.
CARDKEY_IMPORT_JOB_STALE_SECONDS = env.int("CARDKEY_IMPORT_JOB_STALE_SECONDS", default=3600)

# --- Shop behaviour
DEFAULT_CURRENCY = env("DEFAULT_CURRENCY", default="CNY")
# Stock at or below this many keys shows as "low".
LOW_STOCK_THRESHOLD = env.int("LOW_STOCK_THRESHOLD", default=10)
RESERVATION_TTL = env.int("RESERVATION_TTL", default=15 * 60)
# A coupon use taken by a checkout that never made its reservation (its
# process died between the two steps) is given back by reconciliation once
# it is this old and no order holds it.
COUPON_CLAIM_GRACE_SECONDS = env.int("COUPON_CLAIM_GRACE_SECONDS", default=60)
# An order whose payment was started at a provider expires this much later
# than its reservation, while the shop asks the provider whether it was paid
# (a notification may be lost); the question is asked from this long before.
PAYMENT_QUERY_GRACE_SECONDS = env.int("PAYMENT_QUERY_GRACE_SECONDS", default=60)
PAYMENT_QUERY_AHEAD_SECONDS = env.int("PAYMENT_QUERY_AHEAD_SECONDS", default=30)
# An Idempotency-Key is remembered this long past the reservation it made.
IDEMPOTENCY_GRACE_SECONDS = env.int("IDEMPOTENCY_GRACE_SECONDS", default=15 * 60)
# A product page's token is good for checkout this long (then: reload the page).
PAGE_TOKEN_MAX_AGE = env.int("PAGE_TOKEN_MAX_AGE", default=2 * 60 * 60)
# The delivery mail's signed order link opens the order in any browser this
# many days; after that the lookup page asks for the email (apps.orders.order_links).
ORDER_LINK_MAX_AGE_DAYS = env.int("ORDER_LINK_MAX_AGE_DAYS", default=30)
# The checkout cap per product, a token bucket folded into the checkout script
# (0 turns it off), and the persistence backlog at which checkout pauses.
CHECKOUT_RATE_PER_SECOND = env.int("CHECKOUT_RATE_PER_SECOND", default=1000)
CHECKOUT_RATE_BURST = env.int("CHECKOUT_RATE_BURST", default=1000)
PERSIST_BACKLOG_LIMIT = env.int("PERSIST_BACKLOG_LIMIT", default=20000)
# Store-wide (apps.stock.overload): checkout pauses while paid orders waiting
# for keys plus mail messages waiting (one per fulfilment batch, or a mail
# retried alone) reach this many, or every product's persistence
# queues together hold PERSIST_BACKLOG_LIMIT (0 turns one off), and reopens once
# both are under BACKLOG_RESUME_RATIO of their limits.
FULFIL_BACKLOG_LIMIT = env.int("FULFIL_BACKLOG_LIMIT", default=5000)
BACKLOG_RESUME_RATIO = env.float("BACKLOG_RESUME_RATIO", default=0.5)
# The order page's poll (apps.orders.status_records, apps.orders.poll): an
# unchanged order is answered 304 from a record in the cache Redis, kept this
# long at most; a status change drops it at once, so this only bounds how long
# a change made outside the services (an operator's SQL, a drop lost to a
# crash) can go unseen by the page.
ORDER_STATUS_RECORD_SECONDS = env.int("ORDER_STATUS_RECORD_SECONDS", default=60)
# The longest interval the poll asks a client to wait (poll_after_ms, Retry-After).
ORDER_POLL_MAX_MS = env.int("ORDER_POLL_MAX_MS", default=60000)
# Queued reservations written to MariaDB per statement.
PERSIST_BATCH_SIZE = env.int("PERSIST_BATCH_SIZE", default=500)
# The first checkout of a burst publishes a persist task for its product; the
# checkouts after it publish none while that task waits in the queue (it drains
# them all as it starts). The mark of a waiting task expires after this long,
# so a task lost with its broker, or a publish that failed, delays the next at
# most this much (beat's once-a-second drain is the safety net meanwhile), and
# while the broker is down one checkout per product per TTL waits for a publish
# to fail, not every checkout.
PERSIST_REQUEST_TTL_SECONDS = env.float("PERSIST_REQUEST_TTL_SECONDS", default=5.0)
# How long a stock rebuild waits for a persisting batch to finish.
WARM_FENCE_TIMEOUT = env.int("WARM_FENCE_TIMEOUT", default=10)
# How long a persist task waits for a product's fence held by a rebuild or
# another drainer (apps/orders/services/persistence.py).
PERSIST_FENCE_WAIT_SECONDS = env.float("PERSIST_FENCE_WAIT_SECONDS", default=2.0)
# Paid orders served by one fulfilment transaction when the queue is deep.
FULFIL_BATCH_SIZE = env.int("FULFIL_BATCH_SIZE", default=50)
# While a fulfilment task waits in the queue, payments publish no other: it
# serves them all. The mark of a waiting task expires after this long, so a
# task lost with its worker delays later payments at most this much.
FULFIL_REQUEST_TTL_SECONDS = env.int("FULFIL_REQUEST_TTL_SECONDS", default=10)
# A fulfilment task drains paid orders this long, then hands over to a fresh
# task, so persistence and mail tasks on the same worker wait at most this long.
FULFIL_RUN_SECONDS = env.int("FULFIL_RUN_SECONDS", default=2)
# A paid order undelivered this long is re-driven by reconciliation.
FULFIL_REDRIVE_AFTER_SECONDS = env.int("FULFIL_REDRIVE_AFTER_SECONDS", default=60)
# A paid order of a manual-delivery product waits for the merchant this long
# before reconciliation, the admin and the alert call it overdue.
MANUAL_DELIVERY_SLA_HOURS = env.float("MANUAL_DELIVERY_SLA_HOURS", default=24.0)
# The longest text a merchant may enter as a manual delivery.
MANUAL_DELIVERY_MAX_CHARS = env.int("MANUAL_DELIVERY_MAX_CHARS", default=10000)
SITE_URL = env("SITE_URL", default="http://127.0.0.1:8000")

# --- Payments
# Providers whose webhook and pages are served; a real deployment lists its
# real provider and drops "sandbox", which pays without money.
PAYMENT_PROVIDERS = env.list("PAYMENT_PROVIDERS", default=["sandbox"])
# A notification whose timestamp is further than this from now is refused, so a
# captured notification cannot be replayed later.
PAYMENT_WEBHOOK_TOLERANCE_SECONDS = env.int("PAYMENT_WEBHOOK_TOLERANCE_SECONDS", default=300)
# Only for local development; production must set its own.
INSECURE_DEV_SANDBOX_PAYMENT_SECRET = "dev-only-sandbox-payment-secret"
SANDBOX_PAYMENT_SECRET = env("SANDBOX_PAYMENT_SECRET", default=INSECURE_DEV_SANDBOX_PAYMENT_SECRET)
# How the sandbox delivers its notifications, like a real provider would.
SANDBOX_WEBHOOK_TIMEOUT_SECONDS = env.float("SANDBOX_WEBHOOK_TIMEOUT_SECONDS", default=5.0)
SANDBOX_WEBHOOK_ATTEMPTS = env.int("SANDBOX_WEBHOOK_ATTEMPTS", default=3)
# Stripe (Checkout Sessions): the API key (sk_live_/sk_test_, or a restricted
# rk_ key), the signing secret of the shop's webhook endpoint (whsec_), and the
# API's address (only the tests' local fake of Stripe changes it).
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_API_BASE = env("STRIPE_API_BASE", default="https://api.stripe.com")

# 易支付 (epay, the 彩虹易支付 protocol): the gateway's base URL (https in
# production), the merchant id (pid) and the merchant key that signs with MD5.
# Needed only with "epay" in PAYMENT_PROVIDERS; production refuses it without them.
EPAY_GATEWAY_URL = env("EPAY_GATEWAY_URL", default="")
EPAY_PID = env("EPAY_PID", default="")
EPAY_KEY = env("EPAY_KEY", default="")
# Seconds the shop waits for the epay gateway's API (order query, refund).
EPAY_TIMEOUT_SECONDS = env.float("EPAY_TIMEOUT_SECONDS", default=10.0)

# Alipay (支付宝开放平台, RSA2): the app's id (digits), the app's RSA private key
# (PEM; signs every request), Alipay's RSA public key (PEM; from the console's
# 接口加签方式, verifies Alipay's answers and notifications) and the gateway.
# A PEM may be given on one line with \n for its line breaks. Needed only with
# "alipay" in PAYMENT_PROVIDERS; production refuses it without them.
ALIPAY_APP_ID = env("ALIPAY_APP_ID", default="")
ALIPAY_APP_PRIVATE_KEY = env.str("ALIPAY_APP_PRIVATE_KEY", default="", multiline=True)
ALIPAY_PUBLIC_KEY = env.str("ALIPAY_PUBLIC_KEY", default="", multiline=True)
ALIPAY_GATEWAY_URL = env("ALIPAY_GATEWAY_URL", default="https://openapi.alipay.com/gateway.do")
# On: buyers on a computer get a QR code to scan (alipay.trade.precreate, 当面付)
# instead of Alipay's payment page (page pay). Phones always get WAP pay.
ALIPAY_QR = env.bool("ALIPAY_QR", default=False)
# Seconds the shop waits for Alipay's API (precreate, query, refund, close).
ALIPAY_TIMEOUT_SECONDS = env.float("ALIPAY_TIMEOUT_SECONDS", default=10.0)

# WeChat Pay API v3 (wechatpay): the merchant id (商户号), the AppID bound to it,
# the APIv3 key (32 characters; decrypts notifications), the merchant's API
# private key (PEM, apiclient_key.pem) and its certificate's serial, and WeChat
# Pay's public key (PEM) with its id (PUB_KEY_ID_…), which verify WeChat's
# answers and notifications. A PEM may be given on one line with "\n" escapes.
# Needed only with "wechatpay" in PAYMENT_PROVIDERS; production refuses it without them.
WECHATPAY_MCHID = env("WECHATPAY_MCHID", default="")
WECHATPAY_APPID = env("WECHATPAY_APPID", default="")
WECHATPAY_API_V3_KEY = env("WECHATPAY_API_V3_KEY", default="")
WECHATPAY_PRIVATE_KEY = env("WECHATPAY_PRIVATE_KEY", default="").replace("\\n", "\n")
WECHATPAY_CERT_SERIAL = env("WECHATPAY_CERT_SERIAL", default="")
WECHATPAY_PUBLIC_KEY = env("WECHATPAY_PUBLIC_KEY", default="").replace("\\n", "\n")
WECHATPAY_PUBLIC_KEY_ID = env("WECHATPAY_PUBLIC_KEY_ID", default="")
# Only the tests' local fake of WeChat Pay changes it.
WECHATPAY_API_BASE = env("WECHATPAY_API_BASE", default="https://api.mch.weixin.qq.com")

# --- Mail
EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="cardshop <noreply@cardshop.local>")
# The SMTP server of the smtp backend (production refuses the console backend).
EMAIL_HOST = env("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
# A worker claims an order's mail in the gate Redis for this long before it
# sends it (apps/orders/mail.py): longer than one SMTP delivery can take
# (connect, TLS and DATA, each bounded by EMAIL_TIMEOUT), or a slow send could
# be taken over; a worker killed mid-send delays that mail by at most this.
MAIL_LEASE_SECONDS = env.int("MAIL_LEASE_SECONDS", default=120)
# Reconciliation queues again the mail of an order delivered this long ago and
# still not mailed (its message lost, or out of retries), at most
# MAIL_REDRIVE_BATCH orders a run; a mail in flight is left alone.
MAIL_REDRIVE_AFTER_SECONDS = env.int("MAIL_REDRIVE_AFTER_SECONDS", default=600)
MAIL_REDRIVE_BATCH = env.int("MAIL_REDRIVE_BATCH", default=500)
# Where the filebased backend writes each mail (the chaos suite counts them there).
EMAIL_FILE_PATH = env("EMAIL_FILE_PATH", default=str(BASE_DIR / "var" / "mail"))

# --- Merchant notifications (apps/notifications, docs/notifications.md). The
# channels, addresses and secrets are set in the admin; these bound the sending.
# Tries of one notification per channel before it is marked failed (backoff
# doubling from 5 s, capped like the mail's retries).
NOTIFY_MAX_ATTEMPTS = env.int("NOTIFY_MAX_ATTEMPTS", default=12)
# Seconds a webhook or the Telegram Bot API has to answer one try.
NOTIFY_HTTP_TIMEOUT = env.float("NOTIFY_HTTP_TIMEOUT", default=10.0)
# The Telegram Bot API; only the tests' local fake changes it (or a self-hosted Bot API server).
TELEGRAM_API_BASE = env("TELEGRAM_API_BASE", default="https://api.telegram.org")

# --- Per-client rate limits (django-ratelimit, counted in the Redis cache).
# django-ratelimit's own switch: false turns every per-client limit off (for a
# benchmark sending a crowd from one address); the per-buyer purchase limit is
# counted in the checkout script and always holds.
RATELIMIT_ENABLE = env.bool("RATELIMIT_ENABLE", default=True)
RATELIMIT_USE_CACHE = "default"
# A counter that cannot be read for an instant (expiring between two calls)
# lets the request through rather than refusing it.
RATELIMIT_FAIL_OPEN = True
# "count/period" (period s, m, h or d, e.g. "30/m"); an empty value turns that limit off.
RATELIMIT_CHECKOUT_IP = env("RATELIMIT_CHECKOUT_IP", default="30/m")
RATELIMIT_CHECKOUT_BUYER = env("RATELIMIT_CHECKOUT_BUYER", default="10/m")
RATELIMIT_LOOKUP_IP = env("RATELIMIT_LOOKUP_IP", default="10/m")
RATELIMIT_PAY_IP = env("RATELIMIT_PAY_IP", default="30/m")
RATELIMIT_PRICE_IP = env("RATELIMIT_PRICE_IP", default="60/m")
# The client address behind a reverse proxy: the header our proxy sets (e.g.
# X-Forwarded-For, X-Real-IP) and how many of our proxies append to it. Empty
# means REMOTE_ADDR, and every client-supplied header is ignored.
TRUSTED_PROXY_IP_HEADER = env("TRUSTED_PROXY_IP_HEADER", default="")
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=1)
# System checks a deployment chose to silence (e.g. cardshop.W001 when gunicorn faces buyers directly).
SILENCED_SYSTEM_CHECKS = env.list("SILENCED_SYSTEM_CHECKS", default=[])
# Unpaid reservations one client address (an IPv6 client by its /64) may hold
# per product, whatever emails it gives: one address cannot hoard the stock
# under many email variants. Counted in the checkout script; 0 turns it off.
UNPAID_CAP_PER_IP = env.int("UNPAID_CAP_PER_IP", default=5)
# Client addresses the cap does not apply to (CIDR blocks, comma-separated):
# carrier-grade NAT, an office or campus proxy, where many buyers share one
# address. The address is the one client_ip reads (TRUSTED_PROXY_IP_HEADER).
UNPAID_CAP_EXEMPT_NETWORKS = env.list("UNPAID_CAP_EXEMPT_NETWORKS", default=[])
# A typo here would silently cap a whole office: refuse to start instead.
for _cidr in UNPAID_CAP_EXEMPT_NETWORKS:
    ipaddress.ip_network(_cidr.strip(), strict=False)

# --- Bot checks on checkout (apps.orders.bot_checks): suspicious attempts
# (honeypot filled, page token missing or forged, too fast, captcha wrong) are
# counted per client IP and per device for BOT_WINDOW_SECONDS; from
# BOT_SOFT_THRESHOLD of them on, checkout wants a captcha (0 never asks).
BOT_SOFT_THRESHOLD = env.int("BOT_SOFT_THRESHOLD", default=3)
BOT_WINDOW_SECONDS = env.int("BOT_WINDOW_SECONDS", default=600)
# django-simple-captcha: minutes a captcha may be answered in (each is good for one try).
CAPTCHA_TIMEOUT = env.int("CAPTCHA_TIMEOUT_MINUTES", default=5)

# --- Circuit breakers around payment providers and mail: after fail_max
# failures in a row calls fail fast for reset_timeout seconds, then one trial
# call closes or reopens the breaker.
CIRCUIT_BREAKERS = {
    "payment": {
        "fail_max": env.int("BREAKER_PAYMENT_FAIL_MAX", default=5),
        "reset_timeout": env.float("BREAKER_PAYMENT_RESET_TIMEOUT", default=30.0),
    },
    "mail": {
        "fail_max": env.int("BREAKER_MAIL_FAIL_MAX", default=5),
        "reset_timeout": env.float("BREAKER_MAIL_RESET_TIMEOUT", default=60.0),
    },
}

# --- Internationalisation: Chinese first, English alongside.
LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# django-modeltranslation: what a merchant writes (product titles and
# descriptions, category names, the shop settings) has a field per language;
# `product.title` reads the active language's and falls back to the other one
# when the merchant left it empty.
MODELTRANSLATION_DEFAULT_LANGUAGE = "zh-hans"
MODELTRANSLATION_LANGUAGES = ("zh-hans", "en")
MODELTRANSLATION_FALLBACK_LANGUAGES = ("zh-hans", "en")
TIME_ZONE = env("TIME_ZONE", default="Asia/Shanghai")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = env("STATIC_ROOT", default=str(BASE_DIR / "var" / "staticfiles"))
STATICFILES_DIRS = [BASE_DIR / "static"]
# gunicorn serves STATIC_ROOT itself when no nginx is in front (`make run` sets it).
SERVE_STATIC = env.bool("SERVE_STATIC", default=False)
MEDIA_ROOT = env("MEDIA_ROOT", default=str(BASE_DIR / "var" / "media"))
MEDIA_URL = env("MEDIA_URL", default="/media/")
# Django serves MEDIA_ROOT itself only where no nginx is in front (`make run`,
# DEBUG); in production nginx serves /media/ from disk (deploy/nginx/cardshop.conf).
SERVE_MEDIA = env.bool("SERVE_MEDIA", default=DEBUG)
# Product images and the shop logo (apps.catalog.images): what an upload may be.
# The pixel limit is checked from the file's header before anything is decoded,
# so a small file that would decompress to gigabytes (a "decompression bomb") is
# refused without being opened further.
IMAGE_UPLOAD_MAX_BYTES = env.int("IMAGE_UPLOAD_MAX_BYTES", default=5 * 1024 * 1024)
IMAGE_UPLOAD_MAX_SIDE = env.int("IMAGE_UPLOAD_MAX_SIDE", default=6000)
IMAGE_UPLOAD_MAX_PIXELS = env.int("IMAGE_UPLOAD_MAX_PIXELS", default=25_000_000)

# --- The admin's door (apps.core.admin_site, README "Production").
# django-axes checks every login before the password does.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# After this many failed logins from one client address, logins from it are
# refused (the right password too) for AXES_COOLOFF_MINUTES, or until
# `manage.py axes_reset` (0 minutes: only axes_reset unlocks).
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
_axes_cooloff_minutes = env.int("AXES_COOLOFF_MINUTES", default=60)
AXES_COOLOFF_TIME = timedelta(minutes=_axes_cooloff_minutes) if _axes_cooloff_minutes > 0 else None
# Counted per client address only, never per username: a username lockout
# would let anyone lock the real admin out, and the second factor already
# guards an account whose password leaked.
AXES_LOCKOUT_PARAMETERS = ["ip_address"]
# One way to compute the client address, shared with the rate limits: behind
# the trusted proxy the address it saw, never a header a client wrote.
AXES_CLIENT_IP_CALLABLE = "apps.core.client_ip.client_ip"
# The login page itself, saying why and until when (not axes' bare text).
AXES_LOCKOUT_CALLABLE = "apps.core.admin_site.admin_lockout_response"
# A successful login clears its address's failures, so a staff member's typos
# do not add up over days.
AXES_RESET_ON_SUCCESS = True
# No banner from every process at start; failures and lockouts are still logged.
AXES_VERBOSE = False
# The database handler (the default): lockouts are part of the record, and
# survive a Redis restart or flush, which would otherwise unlock every
# attacker at once; logins are few, so their writes cost nothing.
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
# The admin asks staff for a TOTP code as well as the password. Off by default
# on a developer machine and in the tests; production settings always turn it on.
ADMIN_REQUIRE_OTP = env.bool("ADMIN_REQUIRE_OTP", default=False)
# The name authenticator apps show beside the account (enrol_admin's QR code).
OTP_TOTP_ISSUER = env("OTP_TOTP_ISSUER", default="cardshop")
# The admin's device pages never show a TOTP secret (or its QR code) again.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# The API's views (apps.core.api.ShopAPIView) set their own lean classes; these
# are the defaults for the schema and docs views of drf-spectacular.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "apps.core.api.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# GET /api/v1/schema (OpenAPI 3) and the docs at /api/docs.
SPECTACULAR_SETTINGS = {
    "TITLE": "cardshop API",
    "DESCRIPTION": (
        'The public JSON API of the card-key shop. Errors are `{"error": CODE, "detail": text, ...}`: '
        "`error` is a stable code, `detail` is in the request's language (Accept-Language: zh-hans, en)."
    ),
    "VERSION": "1",
    # Offline docs: Swagger UI from drf-spectacular-sidecar's static files, no CDN,
    # and no call to the public spec validator.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
}

# --- Metrics (apps.monitoring, docs/metrics.md)
# /metrics answers requests from these networks, or with "Authorization: Bearer <METRICS_TOKEN>".
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.1/32", "::1/128"])
METRICS_TOKEN = env("METRICS_TOKEN", default="")
# Products whose gate figures a scrape reports (bounds the scrape's cost and series).
METRICS_MAX_PRODUCTS = env.int("METRICS_MAX_PRODUCTS", default=200)
# A Celery worker serves its own metrics on this port (0: not at all), same access rule.
WORKER_METRICS_PORT = env.int("WORKER_METRICS_PORT", default=0)
WORKER_METRICS_ADDRESS = env("WORKER_METRICS_ADDRESS", default="127.0.0.1")
# Request latency buckets of django-prometheus; 2 s is the checkout latency alert's line.
PROMETHEUS_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, float("inf"))

LOG_LEVEL = env("LOG_LEVEL", default="INFO")
# Celery workers' and beat's level (apps.monitoring.celery_hooks); empty means LOG_LEVEL.
# `make run` sets WARNING unless either is configured, so an idle shop prints nothing.
# Not CELERY_LOG_LEVEL: Celery itself sets that variable in its processes.
WORKER_LOG_LEVEL = env("WORKER_LOG_LEVEL", default="") or LOG_LEVEL
# "json": one JSON object a line with request id and order number (apps.core.logging);
# "plain": the same fields as readable text, for a developer's terminal.
LOG_FORMAT = env("LOG_FORMAT", default="json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "apps.core.logging.JsonFormatter"},
        "plain": {"()": "apps.core.logging.PlainFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
