# Lookalike: `make install`, `make run`, `make test`. See README.md.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Settings (CATALOG, INDEX, WEIGHTS, PRECISION, *_PORT) reach the services as environment
# variables: make passes on those set in the shell or on its command line (`make run WEIGHTS=random`).

.PHONY: install run test index rollback clean constraints bench bench-index

install: $(STAMP)

# Re-runs only when a requirements file changed. PyPI's torch is the CUDA build; it runs fine on CPUs.
# constraints.txt pins every transitive dependency too (`make constraints` regenerates it).
$(STAMP): requirements.txt requirements-torch.txt requirements-dev.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt -r requirements-dev.txt -c constraints.txt
	touch $@

run: install
	$(PY) -m lookalike.stack

test: install
	$(PY) -m pytest

index: install
	$(PY) -m indexing --notify http://127.0.0.1:$(or $(CLASSIFIER_PORT),8001) http://127.0.0.1:$(or $(SIMILARITY_PORT),8002)

constraints: install
	$(PY) tools/pin_constraints.py requirements-torch.txt requirements.txt requirements-dev.txt

# Serve the version before the current one again (or TO=<version>), and tell running services.
rollback: install
	$(PY) -m indexing rollback --index $(or $(INDEX),var/index) $(if $(TO),--to $(TO)) \
		--notify http://127.0.0.1:$(or $(CLASSIFIER_PORT),8001) http://127.0.0.1:$(or $(SIMILARITY_PORT),8002)

# Benchmarks, never part of `make test`; reports land in bench/out/. BENCH_ARGS passes flags (see --help).
bench: install
	$(PY) -m bench $(BENCH_ARGS)

bench-index: install
	$(PY) -m bench.index_scale $(BENCH_ARGS)

# Quality report for the built index (not part of `make test`): see README, "Measuring quality".
.PHONY: eval
eval: install
	$(PY) -m indexing.eval --index $(or $(INDEX),var/index) --queries $(or $(QUERIES),../shared/furniture/queries) \
		--out $(or $(EVAL_OUT),eval/out) --weights $(or $(WEIGHTS),auto)

clean:
	rm -rf var test-output
