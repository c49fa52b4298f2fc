# Every target reuses .venv/, creating it when missing. See README.md.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
PORT ?= 8000
# Optional: a PyTorch CPU wheel index for machines where PyPI's default torch is a CUDA build.
TORCH_INDEX_URL ?=

.PHONY: run test lint fmt typecheck migrate worker bench clean-data
.PHONY: bench-retrieval bench-retrieval-scale

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip wheel
	# torch first and pinned, so nothing later swaps in a multi-GB CUDA build.
	$(PIP) install --quiet -c constraints.txt torch==2.13.0 $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	# unstructured's pdf extra pulls torchvision + timm; they break transformers beside the CPU
	# torch and nothing here uses them (hi_res layout detection needs a hub download anyway).
	$(PIP) uninstall --quiet --yes torchvision timm || true
	# opencv-python (unstructured) and opencv-contrib-python (img2table) share the cv2 folder;
	# contrib, a superset, must be written last or OCR table detection switches itself off.
	$(PIP) install --quiet --force-reinstall --no-deps "opencv-contrib-python==$$($(PY) -c 'import importlib.metadata as m; print(m.version("opencv-contrib-python"))')"
	touch $(STAMP)

run: $(STAMP)
	PORT=$(PORT) $(PY) manage.py run_stack

test: $(STAMP)
	RAGAPP_DATA_DIR=$${RAGAPP_TEST_DATA_DIR:-$(CURDIR)/.data/test} $(PY) -m pytest

migrate: $(STAMP)
	$(PY) manage.py migrate

worker: $(STAMP)
	$(PY) -m celery -A ragapp worker --loglevel=INFO --concurrency=1

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: $(STAMP)
	@echo "mypy is not set up yet (see README, Not done yet)"; exit 1

bench: bench-retrieval

# SciFact quality per stage -> bench/results/retrieval-scifact.json (own data folder).
bench-retrieval: $(STAMP)
	RAGAPP_DATA_DIR=$(CURDIR)/.data/bench-retrieval $(PY) manage.py bench_retrieval_scifact

# Latency, RSS and HNSW recall at 10k/100k/300k synthetic chunks -> bench/results/retrieval-scale.json.
bench-retrieval-scale: $(STAMP)
	RAGAPP_DATA_DIR=$(CURDIR)/.data/bench-scale $(PY) manage.py bench_retrieval_scale

clean-data:
	rm -rf .data

# The golden-set evaluation (docs/evals.md): its own data folder and database; exits non-zero when
# a score is below evals/thresholds.json. PROMPT=<id>@<version> runs one prompt version,
# COMPARE=<a>,<b> runs two side by side.
.PHONY: eval
eval: $(STAMP)
	RAGAPP_DATA_DIR=$${RAGAPP_EVAL_DATA_DIR:-$(CURDIR)/.data/eval} RAGAPP_LOG_LEVEL=$${RAGAPP_LOG_LEVEL:-WARNING} $(if $(PROMPT),RAGAPP_PROMPT=$(PROMPT)) \
		$(PY) manage.py eval --stop-db-server $(if $(PROMPT),--prompt $(PROMPT)) $(if $(COMPARE),--compare $(COMPARE))

# 50 streaming chat users for 5 min against the real stack and a faulty provider, all on
# loopback (own data folder, Redis on 6392, ports 8790/8791) -> bench/results/load.json.
.PHONY: bench-load bench-chaos
bench-load: $(STAMP)
	$(PY) -m bench.load.run --out bench/results/load.json

# 200 documents while the worker is SIGKILLed 20 times, Redis (own, port 6390) restarted 3 times
# and PostgreSQL once (own data folder) -> bench/results/chaos.json.
bench-chaos: $(STAMP)
	$(PY) -m bench.chaos.run --out bench/results/chaos.json

# Ingestion speed over the messy-docs corpus and the 400-page PDF, end to end vs the raw embedder
# (own data folder) -> bench/results/ingestion.json. Also the injection detector's precision/recall.
.PHONY: bench-ingest
bench-ingest: $(STAMP)
	RAGAPP_DATA_DIR=$(CURDIR)/.data/bench-ingest RAGAPP_LOG_LEVEL=$${RAGAPP_LOG_LEVEL:-WARNING} $(PY) -m bench.ingest
	$(PY) -m bench.injection_detector --out bench/results/injection-detector.json > /dev/null

bench-answer: $(STAMP)
	RAGAPP_DATA_DIR=$${RAGAPP_BENCH_DATA_DIR:-$(CURDIR)/.data/bench-answer} $(PY) bench/answer_bench.py

# The injection sets replayed through the real answering pipeline, extractive and with an
# obedient model on loopback (own data folder, rolled back) -> bench/results/safety.json.
.PHONY: bench-safety
bench-safety: $(STAMP)
	RAGAPP_DATA_DIR=$(CURDIR)/.data/bench-safety RAGAPP_LOG_LEVEL=$${RAGAPP_LOG_LEVEL:-WARNING} \
		$(PY) -m bench.safety --out bench/results/safety.json
