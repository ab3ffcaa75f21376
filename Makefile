# Lookalike: `make install`, `make run`, `make test`, `make docs`. See README.md and docs/.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Settings (CATALOG, INDEX, WEIGHTS, PRECISION, *_PORT) reach the programs as environment
# variables: make passes on those set in the shell or on its command line (`make run WEIGHTS=random`).
# Each target is a thin wrapper over the `lookalike` command's code (`.venv/bin/lookalike --help`);
# docs/reference/configuration.md lists every variable and flag.

.PHONY: install run test lint index rollback clean constraints bench bench-index docs docs-screenshot

install: $(STAMP)

# The `lookalike` distribution, editable, with its dev and index extras (the index extra is the job's torch;
# serving needs none of it); re-runs only when pyproject.toml or the lock changed.
# PyPI's torch is the CUDA build; it runs fine on CPUs. constraints.txt pins every transitive dependency
# (`make constraints` regenerates it).
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -c constraints.txt -e '.[dev,index]'
	touch $@

run: install
	$(PY) -m supervisor.stack

# Style and import order (ruff), then the type hints (mypy: strict on lookalike/, gateway/ and
# similarity_service/, --check-untyped-defs elsewhere; see pyproject.toml).
LINTED := lookalike gateway similarity_service classifier_service indexing evaluation bench supervisor tools tests
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy $(LINTED)

# The suite on TEST_WORKERS pytest-xdist workers (each test file stays on one, with its fixtures), then
# the schemathesis tests on their own: their cases share one test id, which xdist would run once.
TEST_WORKERS ?= 2
SCHEMA_TESTS := tests/test_openapi_schemathesis.py
test: lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --ignore=$(SCHEMA_TESTS)
	$(PY) -m pytest -p no:xdist $(SCHEMA_TESTS)

# The services' internal token: LOOKALIKE_INTERNAL_TOKEN if set, else the one `make run` made for its run.
INTERNAL_TOKEN = $${LOOKALIKE_INTERNAL_TOKEN:-$$(cat $(dir $(or $(INDEX),var/index))internal-token 2>/dev/null)}

index: install
	LOOKALIKE_INTERNAL_TOKEN="$(INTERNAL_TOKEN)" $(PY) -m indexing --notify http://127.0.0.1:$(or $(CLASSIFIER_PORT),8001) http://127.0.0.1:$(or $(SIMILARITY_PORT),8002)

constraints: install
	$(PY) tools/pin_constraints.py

# Serve the version before the current one again (or TO=<version>), and tell running services.
rollback: install
	LOOKALIKE_INTERNAL_TOKEN="$(INTERNAL_TOKEN)" $(PY) -m indexing rollback --index $(or $(INDEX),var/index) $(if $(TO),--to $(TO)) \
		--notify http://127.0.0.1:$(or $(CLASSIFIER_PORT),8001) http://127.0.0.1:$(or $(SIMILARITY_PORT),8002)

# Benchmarks, never part of `make test`; reports land in bench/out/. BENCH_ARGS passes flags (see --help).
bench: install
	$(PY) -m bench $(BENCH_ARGS)

bench-index: install
	$(PY) -m bench.index_scale $(BENCH_ARGS)
	$(PY) -m bench.vector_stores $(VECTOR_BENCH_ARGS)

# Quality report for the built index (not part of `make test`): see docs/quality.md.
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

# Text search quality (precision@1, @10, recall@10), bm25 alone against bm25 + the sentence model (TEXT_MODEL), on
# evaluation/data/text_queries.csv and absent_words.csv; TEXT_QUERIES names other sets. Against the serving index;
# `make eval-text CATALOG=../shared/furniture/catalog` measures a catalogue's words alone, embedded on the spot.
.PHONY: eval-text
eval-text: install
	$(PY) -m evaluation.text --queries $(or $(TEXT_QUERIES),evaluation/data/text_queries.csv evaluation/data/absent_words.csv) \
		--out $(or $(EVAL_OUT),var/eval) \
		$(if $(CATALOG),--catalog $(CATALOG),--index $(or $(INDEX),var/index))

# docs/reference/configuration.md, generated from the settings classes (tests/docs fails while it is stale).
.PHONY: settings-reference
settings-reference: install
	$(PY) -m supervisor.settings_reference

clean:
	rm -rf var test-output site

# The documentation site (docs/, mkdocs.yml) built into site/; --strict fails on a broken link or a page
# missing from the nav. Installs the docs extra (mkdocs-material) on first use.
DOCS_STAMP := $(VENV)/.installed-docs
$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --disable-pip-version-check -q -c constraints.txt -e '.[dev,index,docs]'
	touch $@

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# docs/screenshot.png, docs/widget.png and docs/staff.png, the docs' pictures, made by the browser tests
# (needs /usr/bin/chromium).
docs-screenshot: install
	LOOKALIKE_SCREENSHOT=1 $(PY) -m pytest tests/gateway/browser/test_search_page.py -k docs_screenshot -q
	LOOKALIKE_SCREENSHOT=1 $(PY) -m pytest tests/gateway/browser/test_widget.py -k desktop -q
	LOOKALIKE_SCREENSHOT=1 $(PY) -m pytest tests/gateway/browser/test_staff_page.py -k token_once -q

# The real image built and the compose stack run, on this machine's own Docker engine (needs root to
# start one; skips loudly where none can start, fails with CI=true). See docs/operations.md.
.PHONY: test-deploy
test-deploy: install
	PY=$(PY) tools/test_deploy.sh
