"""Settings, read only from the environment (and an optional ``.env``) through django-environ.

Every variable is documented in ``.env.example``.  With nothing set, the app runs on SQLite with a
filesystem Celery broker and file-based locks, so ``make run`` needs no server (see docs/decisions.md).
"""
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
environ.Env.read_env(env.str("B24SIGN_ENV_FILE", default=str(BASE_DIR / ".env")))

DEBUG = env.bool("DEBUG", default=False)
_DEV_SECRET = "dev-only-insecure-secret-key-change-me-0123456789abcdefghijklmnopqrstuvwxyz"
SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET if DEBUG else "")
if not SECRET_KEY:
    raise environ.ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off (see .env.example)")
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])

# Public https URL of the app; robot handler URLs are built from it.
APP_BASE_URL = env.str("APP_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[APP_BASE_URL])

# --- Bitrix24 ---------------------------------------------------------------------------------------
B24_CLIENT_ID = env.str("B24_CLIENT_ID", default="local.b24sign.dev")
B24_CLIENT_SECRET = env.str("B24_CLIENT_SECRET", default="dev-client-secret")
# The trusted OAuth server.  Install requests name their own SERVER_ENDPOINT; we only accept the hosts
# of this URL and Bitrix24's two regional servers, so a forged install cannot point us at a fake one.
B24_OAUTH_URL = env.str("B24_OAUTH_URL", default="https://oauth.bitrix.info/oauth/token/")
B24_TRUSTED_OAUTH_HOSTS = env.list("B24_TRUSTED_OAUTH_HOSTS", default=["oauth.bitrix.info", "oauth.bitrix24.tech"])
# Lets emulated portals on http://127.0.0.1 be used in tests and demos.  Never in production.
ALLOW_HTTP_PORTALS = env.bool("ALLOW_HTTP_PORTALS", default=False)
# Hosts (or host:port) that links may point to although they are private: tests and demos only.
FETCH_PRIVATE_HOSTS = env.list("FETCH_PRIVATE_HOSTS", default=[])
# Leaky bucket per portal (Bitrix24: burst 50 draining 2/s; Enterprise 250 and 5/s).  We keep a small
# reserve under the portal's own limit because other apps on our egress IP share it.
B24_RATE_BURST = env.int("B24_RATE_BURST", default=50)
B24_RATE_DRAIN = env.float("B24_RATE_DRAIN", default=2.0)
B24_RATE_RESERVE = env.float("B24_RATE_RESERVE", default=0.1)
B24_MAX_INLINE_WAIT = env.float("B24_MAX_INLINE_WAIT", default=15.0)  # longer waits become task retries
B24_HTTP_TIMEOUT = env.float("B24_HTTP_TIMEOUT", default=30.0)
B24_ROBOT_MAX_BODY = env.int("B24_ROBOT_MAX_BODY", default=256 * 1024)
B24_DOCUMENT_MAX_BYTES = env.int("B24_DOCUMENT_MAX_BYTES", default=50 * 1024 * 1024)
# Document source "Template": how long a generated document may take to get its PDF before the robot is
# answered with an error (the call is re-queued every 15 s meanwhile; bizproc_ext/sources.py).
DOCGEN_PDF_MAX_WAIT = env.int("DOCGEN_PDF_MAX_WAIT", default=90)

# --- Providers (base URLs from settings so emulators can stand in) ---------------------------------
SIGNNOW_API_BASE = env.str("SIGNNOW_API_BASE", default="https://api.signnow.com")
EVIA_API_BASE = env.str("EVIA_API_BASE", default="https://evia.enadocapp.com")
PROVIDER_HTTP_TIMEOUT = env.float("PROVIDER_HTTP_TIMEOUT", default=30.0)
# signNow publishes no rate limit (spec U-S7): stay polite per connected account.
SIGNNOW_RATE_PER_S = env.float("SIGNNOW_RATE_PER_S", default=1.0)
SIGNNOW_RATE_BURST = env.float("SIGNNOW_RATE_BURST", default=10.0)
# Per-account pacing for any provider, "code=rate/burst,…" (e.g. "signnow=1.5/30,evia=2/20"); a provider
# not listed keeps its default (signNow: the two settings above; Evia: unpaced, it publishes no limit).
PROVIDER_PACING = {
    code.strip(): (float(rate), float(burst))
    for code, rate, burst in (
        (item.split("=")[0], *item.split("=")[1].split("/")) for item in env.list("PROVIDER_PACING", default=[])
    )
}

# --- Secrets at rest ------------------------------------------------------------------------------
# Comma-separated Fernet keys: the first encrypts, all decrypt (rotation: prepend, run
# `manage.py rotate_encryption`, then drop the old key).  In DEBUG a key is derived from SECRET_KEY.
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[])

# --- Storage, broker, coordination ------------------------------------------------------------------
DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Behind a pooler in transaction mode (PgBouncer): no server-side cursors, and the robot handler's INSERT is
# not prepared (a prepared statement belongs to one server connection; bizproc_ext/models.py).
DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = env.bool("DB_TRANSACTION_POOLING", default=False)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE",
                                       "init_command": "PRAGMA journal_mode=WAL;"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0

# Locks and rate-limit buckets shared by web and worker processes: Redis when REDIS_URL is set,
# otherwise files under var/coord (one machine only; fine for `make run`).
REDIS_URL = env.str("REDIS_URL", default="")
COORDINATION_DIR = env.str("COORDINATION_DIR", default=str(BASE_DIR / "var" / "coord"))

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = Path(env.str("CELERY_BROKER_DIR", default=str(BASE_DIR / "var" / "broker")))
    (_queue_dir / "processed").mkdir(parents=True, exist_ok=True)  # kombu does not create it
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir), "data_folder_out": str(_queue_dir),
        "processed_folder": str(_queue_dir / "processed"), "store_processed": False,
        "control_folder": str(_queue_dir / "control"),  # broadcast (pidbox) files; default is the cwd
    }
else:
    # Every countdown we use stays far below this (see docs/decisions.md on Redis visibility timeout).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = False  # the sweeper recovers lost calls; no redelivery loops
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=300)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=360)
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BEAT_SCHEDULE_FILENAME = env.str("CELERY_BEAT_SCHEDULE_FILENAME",
                                        default=str(BASE_DIR / "var" / "celerybeat-schedule"))
ROBOT_CALL_STALE_AFTER = env.int("ROBOT_CALL_STALE_AFTER", default=420)  # > CELERY_TASK_TIME_LIMIT
# The outbox drainer (bizproc_ext/drainer.py) runs in every Celery worker; idle, it looks every 50 ms.
ROBOT_CALL_DRAINER = env.bool("ROBOT_CALL_DRAINER", default=True)
ROBOT_CALL_DRAIN_INTERVAL = env.float("ROBOT_CALL_DRAIN_INTERVAL", default=0.05)
# Calls of one portal found waiting together run as one group that shares its Bitrix24 batches
# (bizproc_ext/coalesce.py): at most this many per group, waiting at most this long for partners.
ROBOT_COALESCE_MAX = env.int("ROBOT_COALESCE_MAX", default=20)
ROBOT_COALESCE_WINDOW = env.float("ROBOT_COALESCE_WINDOW", default=0.2)
# ... and this long while a burst runs (8 or more calls of the portal in the process), for fuller batches.
ROBOT_COALESCE_BURST_WINDOW = env.float("ROBOT_COALESCE_BURST_WINDOW", default=2.0)
# ... and this long once such a burst has lasted ROBOT_COALESCE_SUSTAINED_AFTER seconds (a provider pacing the
# sends: the answers trickle, so a request of the portal's token needs about this long to fill).
ROBOT_COALESCE_SUSTAINED_WINDOW = env.float("ROBOT_COALESCE_SUSTAINED_WINDOW", default=4.0)
ROBOT_COALESCE_SUSTAINED_AFTER = env.float("ROBOT_COALESCE_SUSTAINED_AFTER", default=10.0)
# Group jobs running at once per worker process (each holds a PostgreSQL connection while it runs).
ROBOT_COALESCE_THREADS = env.int("ROBOT_COALESCE_THREADS", default=32)
# A job thread that has run a job waits this long for the next on the same connection before it closes it.
ROBOT_COALESCE_LINGER = env.float("ROBOT_COALESCE_LINGER", default=1.0)
# Calls a worker process takes into its background at most (groups run there, freeing the Celery thread for
# the next group); beyond it, groups run in the Celery thread again (back-pressure).
ROBOT_COALESCE_BACKLOG = env.int("ROBOT_COALESCE_BACKLOG", default=500)
# A request's change reaches its CRM card this long after it happened: the changes of many requests of one
# portal in that time share batches (crmcard/tasks.py).
CRM_CARD_SYNC_DELAY = env.float("CRM_CARD_SYNC_DELAY", default=2.0)
# A change that a robot call's own send announces rides in the request answering that call instead (issue 14,
# sixth round: bizproc_ext/riders.py); off, every change waits for the portal's sync as above.
CRM_CARD_WITH_ANSWER = env.bool("CRM_CARD_WITH_ANSWER", default=True)
# The robot handler keeps a verified portal's id and token digest this long per process (one DB read saved
# per call; a changed token is re-read at once, an uninstall is seen by the worker).
ROBOT_PORTAL_CACHE_TTL = env.float("ROBOT_PORTAL_CACHE_TTL", default=5.0)
# A running call's lease (renewed by its worker every third of it) and how long a queued call may sit
# unpublished: a SIGKILLed worker's calls are running again within LEASE + one sweep (docs/decisions.md).
ROBOT_CALL_LEASE = env.int("ROBOT_CALL_LEASE", default=45)
ROBOT_CALL_REPUBLISH_AFTER = env.int("ROBOT_CALL_REPUBLISH_AFTER", default=60)
CELERY_BEAT_SCHEDULE = {
    "sweep-robot-calls": {"task": "bizproc_ext.tasks.sweep_robot_calls", "schedule": 30.0},
    "poll-open-requests": {"task": "signing.tasks.poll_open_requests", "schedule": 60.0},
    "finalize-stragglers": {"task": "signing.tasks.finalize_stragglers", "schedule": 120.0},
    "check-callbacks": {"task": "signing.tasks.check_callbacks", "schedule": 3600.0},
    "answer-finished-requests": {"task": "bizproc_ext.tasks.answer_finished_requests", "schedule": 120.0},
    "refresh-idle-portals": {"task": "b24app.tasks.refresh_idle_portals", "schedule": 6 * 3600.0},
    "sync-due-cards": {"task": "crmcard.tasks.sync_due_cards", "schedule": 60.0},
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Django -----------------------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
    "b24app",       # platform: portals, OAuth, REST client, app events, frames
    "signing",      # providers, signature requests, webhooks, finalization
    "bizproc_ext",  # automation: robots, their handler and pipeline, answers to workflows
    "crmcard",      # the CRM card: placements, timeline card, status fields, triggers, notifications
    "pages",        # the app slider, settings, dashboard, placements
]
MIDDLEWARE = [
    "b24app.middleware.content_length_guard",
    "bizproc_ext.middleware.robot_fast_path",  # robot calls skip the page middleware below (its docstring)
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [BASE_DIR / "templates"],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": ["django.template.context_processors.request",
                                       "django.template.context_processors.i18n"]},
}]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("ru", "Русский")]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = env.str("MEDIA_ROOT", default=str(BASE_DIR / "var" / "media"))  # signed copies; never served directly
STATIC_ROOT = env.str("STATIC_ROOT", default=str(BASE_DIR / "var" / "static"))
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2 * 1024 * 1024)
# Signed copies and audit trails providers hand us (by API or inside a callback): larger ones are refused.
SIGNED_FILE_MAX_BYTES = env.int("SIGNED_FILE_MAX_BYTES", default=40 * 1024 * 1024)

# --- Security (check --deploy is clean with DEBUG off) ---------------------------------------------
X_FRAME_OPTIONS = "DENY"  # frame-only views opt in with a per-portal CSP frame-ancestors (b24app.framing)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz/$"]  # the container health check speaks plain http inside
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = not DEBUG
# Inside a Bitrix24 frame third-party cookies are unreliable: the app authenticates XHRs with a signed
# token in a header, so the session/CSRF cookies are not used by frame pages.
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

# Prometheus metrics (b24app/metrics.py): counters in Redis, /metrics for a scraper with this Bearer token
# (unset: no endpoint).  METRICS_ENABLED=0 stops counting altogether.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ENABLED = env.bool("METRICS_ENABLED", default=True)
# Counters are buffered per process and written to Redis this often (0: one write per count).
METRICS_FLUSH_INTERVAL = env.float("METRICS_FLUSH_INTERVAL", default=1.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Every line names the portal (short member id), the robot call and the signature request it is about
    # ("-" when none): b24app/logcontext.py.  Webhook URLs carry their account's secret in the path;
    # Django's loggers print paths (b24app.logfilters).
    "filters": {"context": {"()": "b24app.logcontext.ContextFilter"},
                "url_secrets": {"()": "b24app.logfilters.MaskUrlSecrets"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s "
                                       "[portal=%(portal)s call=%(call)s request=%(request)s] %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain",
                             "filters": ["context", "url_secrets"]}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"urllib3": {"level": "WARNING"},  # urllib3 logs full URLs, which may carry signed tokens
                "django.request": {"filters": ["url_secrets"]},
                "django.server": {"filters": ["url_secrets"]}},
}
