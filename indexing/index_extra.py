"""What the indexing job needs beyond serving: the `index` extra (torch, torchvision, sentence-transformers).

The base install (`pip install lookalike`) is what the three services need, and leaves torch out; the job
uses torch to load the weights, train the head and export the models to ONNX. Without it the job stops
with a JobError that says what to install, not with an ImportError's traceback.
"""

from __future__ import annotations

import importlib

from lookalike.errors import IndexExtraMissing

INDEX_EXTRA = ("torch", "torchvision")


def require_index_extra(what: str = "The indexing job") -> None:
    """IndexExtraMissing where the index extra's libraries cannot be imported."""
    missing = []
    for name in INDEX_EXTRA:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise IndexExtraMissing(
            f"{what} needs {' and '.join(missing)}, which this installation lacks: the serving install "
            "(`pip install lookalike`) leaves them out. Install the job's extra: pip install 'lookalike[index]' "
            "(in a checkout: pip install -e '.[index]', or `make install`); or run the index image.")
