# Lookalike: `make install`, `make run`, `make test`. See README.md.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Settings (CATALOG, INDEX, WEIGHTS, PRECISION, *_PORT) reach the services as environment
# variables: make passes on those set in the shell or on its command line (`make run WEIGHTS=random`).

.PHONY: install run test lint index rollback clean constraints bench bench-index

install: $(STAMP)

# The `lookalike` distribution, editable, with its dev extra; re-runs only when pyproject.toml or the lock changed.
# PyPI's torch is the CUDA build; it runs fine on CPUs. constraints.txt pins every transitive dependency
# (`make constraints` regenerates it).
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -c constraints.txt -e '.[dev]'
	touch $@

run: install
	$(PY) -m supervisor.stack

# Style and import order (ruff), then the type hints (mypy: strict on lookalike/, gateway/ and
# similarity_service/, --check-untyped-defs elsewhere; see pyproject.toml).
LINTED := lookalike gateway similarity_service classifier_service indexing evaluation bench supervisor tools tests
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy $(LINTED)

test: lint
	$(PY) -m pytest

index: install
	$(PY) -m indexing --notify http://127.0.0.1:$(or $(CLASSIFIER_PORT),8001) http://127.0.0.1:$(or $(SIMILARITY_PORT),8002)

constraints: install
	$(PY) tools/pin_constraints.py

# Serve the version before the current one again (or TO=<version>), and tell running services.
rollback: install
	$(PY) -m indexing rollback --index $(or $(INDEX),var/index) $(if $(TO),--to $(TO)) \
		--notify http://127.0.0.1:$(or $(CLASSIFIER_PORT),8001) http://127.0.0.1:$(or $(SIMILARITY_PORT),8002)

# Benchmarks, never part of `make test`; reports land in bench/out/. BENCH_ARGS passes flags (see --help).
bench: install
	$(PY) -m bench $(BENCH_ARGS)

bench-index: install
	$(PY) -m bench.index_scale $(BENCH_ARGS)
	$(PY) -m bench.vector_stores $(VECTOR_BENCH_ARGS)

# Quality report for the built index (not part of `make test`): see README, "Measuring quality".
.PHONY: eval
eval: install
	$(PY) -m evaluation.photos --index $(or $(INDEX),var/index) --queries $(or $(QUERIES),../shared/furniture/queries) \
		--out $(or $(EVAL_OUT),var/eval) --weights $(or $(WEIGHTS),auto)
	$(MAKE) eval-text
	$(MAKE) eval-feedback

# Simulated shoppers teach words the catalogue lacks ("couch" without synonyms): p@20 per round, learnt text
# associations and Refine reported apart. In process, on a view of the serving index; its feedback is untouched.
.PHONY: eval-feedback
eval-feedback: install
	$(PY) -m evaluation.feedback --index $(or $(INDEX),var/index) --out $(or $(EVAL_OUT),var/eval)

# Text search quality (precision@10, recall@10) on evaluation/data/text_queries.csv; TEXT_QUERIES names another set.
# Against the serving index; `make eval-text CATALOG=../shared/furniture/catalog` measures a catalogue's words alone.
.PHONY: eval-text
eval-text: install
	$(PY) -m evaluation.text --queries $(or $(TEXT_QUERIES),evaluation/data/text_queries.csv) --out $(or $(EVAL_OUT),var/eval) \
		$(if $(CATALOG),--catalog $(CATALOG),--index $(or $(INDEX),var/index))

clean:
	rm -rf var test-output

# The real image built and the compose stack run, on this machine's own Docker engine (needs root to
# start one; skips loudly where none can start, fails with CI=true). See README "Deploy".
.PHONY: test-deploy
test-deploy: install
	PY=$(PY) tools/test_deploy.sh
