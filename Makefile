# Lookalike: `make install`, `make run`, `make test`. See README.md.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Settings reach the services as environment variables, from make or from the shell.
export CATALOG INDEX WEIGHTS PRECISION GATEWAY_PORT CLASSIFIER_PORT SIMILARITY_PORT

.PHONY: install run test index rollback clean

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

# Serve the version before the current one again (or TO=<version>), and tell running services.
rollback: install
	$(PY) -m indexing rollback --index $(or $(INDEX),var/index) $(if $(TO),--to $(TO)) \
		--notify http://127.0.0.1:$(or $(CLASSIFIER_PORT),8001) http://127.0.0.1:$(or $(SIMILARITY_PORT),8002)

clean:
	rm -rf var test-output
