"""`python -m similarity_service` (or `lookalike serve similarity`): vector and text search over the
serving index version, on SIMILARITY_HOST:SIMILARITY_PORT."""

import sys

from lookalike.serving import service_program
from similarity_service.app import create_app
from similarity_service.settings import SimilaritySettings

PROGRAM = service_program("similarity", SimilaritySettings, create_app, prog="python -m similarity_service")

if __name__ == "__main__":
    sys.exit(PROGRAM.main())
