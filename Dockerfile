# Two images from one file: `serving` (the default, last stage) runs the three services on ONNX Runtime
# and holds no torch; `index` adds torch, torchvision and sentence-transformers (the `index` extra) for
# the indexing job, which loads the weights and exports the models to ONNX (torch), then fits the head (scikit-learn).
#   docker build -t lookalike:latest .                        # serving: classifier, similarity, gateway
#   docker build --target index -t lookalike-index:latest .   # the indexing job
# The command picks the role (module names, run with `python -m`):
#   classifier_service | similarity_service | gateway (serving's default) | indexing --catalog DIR --index DIR ...
# No weights and no catalogue inside: $TORCH_HOME, the index and the catalogue are volumes under /data.
# The services read the models the job wrote into the index (ONNX files), never torch's weights.
# Every role listens on port 8000 inside its own container. See compose.yaml and docs/operations.md.
# No `# syntax=` line: BuildKit would fetch that frontend from Docker Hub; the one built into Docker
# (20.10 or later) reads everything here, cache mounts and stages included.
# BASE_IMAGE: any Debian bookworm with Python 3.11 as `python`; `make test-deploy` builds a stand-in.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE} AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

# What serving needs: the distribution's dependencies as pyproject.toml declares them (no torch), pinned by
# constraints.txt, from PyPI; the code comes after, so a code change rebuilds no dependency layer.
# pip's downloads go to a BuildKit cache mount: kept between builds, never in the image.
COPY pyproject.toml constraints.txt /tmp/requirements/
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv /opt/venv \
 && python -c "import tomllib, sys; sys.stdout.write(chr(10).join(tomllib.load(open(sys.argv[1], 'rb'))['project']['dependencies']))" \
        /tmp/requirements/pyproject.toml > /tmp/requirements/dependencies.txt \
 && pip install -c /tmp/requirements/constraints.txt -r /tmp/requirements/dependencies.txt \
 && rm -rf /tmp/requirements

# A non-root user. The /data folders are created here so that new named volumes mounted on them
# start out owned by that user (Docker copies ownership into an empty volume).
RUN useradd --system --user-group --uid 10001 --home-dir /app --no-create-home lookalike \
 && mkdir -p /data/index /data/torch /data/reference_images /data/feedback \
 && chown lookalike:lookalike /data/index /data/torch /data/feedback

WORKDIR /app
ENV INDEX=/data/index \
    TORCH_HOME=/data/torch \
    WEIGHTS=imagenet \
    CLASSIFIER_HOST=0.0.0.0 \
    SIMILARITY_HOST=0.0.0.0 \
    GATEWAY_HOST=0.0.0.0 \
    CLASSIFIER_PORT=8000 \
    SIMILARITY_PORT=8000 \
    GATEWAY_PORT=8000
EXPOSE 8000

# No curl in a slim image: Python asks /readyz (model or index loaded; on the gateway, both services ready).
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]

ENTRYPOINT ["python", "-m"]

# --- the indexing job's image: serving's, plus the `index` extra -------------------------------------
FROM base AS index

# torch's CPU build: PyPI's torch is the CUDA build, which pulls about 3 GB of NVIDIA libraries.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# The torch pair first, from the CPU index (2.14.1+cpu satisfies the lock's torch==2.14.1); then the rest of
# the `index` extra, pinned by constraints.txt, from PyPI. The tests install the same way.
COPY requirements-torch.txt pyproject.toml constraints.txt /tmp/requirements/
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --index-url "$TORCH_INDEX_URL" -r /tmp/requirements/requirements-torch.txt \
 && python -c "import tomllib, sys; sys.stdout.write(chr(10).join(tomllib.load(open(sys.argv[1], 'rb'))['project']['optional-dependencies']['index']))" \
        /tmp/requirements/pyproject.toml > /tmp/requirements/index.txt \
 && pip install -c /tmp/requirements/constraints.txt -r /tmp/requirements/index.txt \
 && rm -rf /tmp/requirements

COPY lookalike/ lookalike/
COPY classifier_service/ classifier_service/
COPY similarity_service/ similarity_service/
COPY gateway/ gateway/
COPY indexing/ indexing/
USER lookalike
CMD ["indexing"]

# --- the serving image (the default target): the three services, no torch ---------------------------
FROM base AS serving

COPY lookalike/ lookalike/
COPY classifier_service/ classifier_service/
COPY similarity_service/ similarity_service/
COPY gateway/ gateway/
COPY indexing/ indexing/
USER lookalike
CMD ["gateway"]
