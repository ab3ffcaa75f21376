# Lookalike: `make install`, `make run`, `make test`. See README.md.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Settings reach the services as environment variables, from make or from the shell.
export CATALOG INDEX WEIGHTS PRECISION GATEWAY_PORT CLASSIFIER_PORT SIMILARITY_PORT

.PHONY: install run test index clean bench bench-index

install: $(STAMP)

# Re-runs only when a requirements file changed. PyPI's torch is the CUDA build; it runs fine on CPUs.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt -r requirements-dev.txt
	touch $@

run: install
	$(PY) -m lookalike.stack

test: install
	$(PY) -m pytest

index: install
	$(PY) -m indexing --catalog $(or $(CATALOG),reference_images) --index $(or $(INDEX),var/index) \
		--weights $(or $(WEIGHTS),auto) --notify http://127.0.0.1:$(or $(CLASSIFIER_PORT),8001) \
		http://127.0.0.1:$(or $(SIMILARITY_PORT),8002)

# Benchmarks, never part of `make test`; reports land in bench/out/. BENCH_ARGS passes flags (see --help).
bench: install
	$(PY) -m bench $(BENCH_ARGS)

bench-index: install
	$(PY) -m bench.index_scale $(BENCH_ARGS)

clean:
	rm -rf var test-output
