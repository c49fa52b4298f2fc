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

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip wheel
	# torch first and pinned, so nothing later swaps in a multi-GB CUDA build.
	$(PIP) install --quiet -c constraints.txt torch==2.13.0 $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	# unstructured's pdf extra pulls torchvision + timm; they break transformers beside the CPU
	# torch and nothing here uses them (hi_res layout detection needs a hub download anyway).
	$(PIP) uninstall --quiet --yes torchvision timm || true
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

bench: $(STAMP)
	@echo "no benchmarks yet (see README, Not done yet)"; exit 1

clean-data:
	rm -rf .data

# The golden-set evaluation (docs/evals.md): its own data folder and database; exits non-zero when
# a score is below evals/thresholds.json. PROMPT=<id>@<version> runs one prompt version,
# COMPARE=<a>,<b> runs two side by side.
.PHONY: eval
eval: $(STAMP)
	RAGAPP_DATA_DIR=$${RAGAPP_EVAL_DATA_DIR:-$(CURDIR)/.data/eval} RAGAPP_LOG_LEVEL=$${RAGAPP_LOG_LEVEL:-WARNING} $(if $(PROMPT),RAGAPP_PROMPT=$(PROMPT)) \
		$(PY) manage.py eval --stop-db-server $(if $(PROMPT),--prompt $(PROMPT)) $(if $(COMPARE),--compare $(COMPARE))

.PHONY: bench-answer
bench-answer: $(STAMP)
	RAGAPP_DATA_DIR=$${RAGAPP_BENCH_DATA_DIR:-$(CURDIR)/.data/bench-answer} $(PY) bench/answer_bench.py
