"""What the indexing job needs beyond serving: the `index` extra (torch, torchvision, sentence-transformers,
scikit-learn).

The base install (`pip install lookalike`) is what the three services need, and leaves torch out; the job
uses torch to load the weights and export the models to ONNX, and scikit-learn to fit the head. Found, not
imported: the job's own process never imports torch (`indexing.torch_steps`). Without it the job stops
with a JobError that says what to install, not with an ImportError's traceback.
"""

from __future__ import annotations

import importlib.util

from lookalike.errors import IndexExtraMissing

INDEX_EXTRA = ("torch", "torchvision", "sklearn")
PACKAGES = {"sklearn": "scikit-learn"}
"""The name to install where it is not the one imported."""


def require_index_extra(what: str = "The indexing job") -> None:
    """IndexExtraMissing where the index extra's libraries cannot be imported."""
    missing = [PACKAGES.get(name, name) for name in INDEX_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        raise IndexExtraMissing(
            f"{what} needs {' and '.join(missing)}, which this installation lacks: the serving install "
            "(`pip install lookalike`) leaves them out. Install the job's extra: pip install 'lookalike[index]' "
            "(in a checkout: pip install -e '.[index]', or `make install`); or run the index image.")
