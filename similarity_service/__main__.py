"""`python -m similarity_service` (or `lookalike serve similarity`): similarity search on SIMILARITY_HOST:SIMILARITY_PORT.

Flags and environment variables come from similarity_service/settings.py; `--help` lists them.
"""

import sys
from functools import partial

from lookalike.serving import serve
from lookalike.settings import read_command_line
from similarity_service.app import create_app
from similarity_service.settings import SimilaritySettings


def serve_similarity(settings: SimilaritySettings) -> int:
    serve("similarity", partial(create_app, settings), settings.host, settings.port)
    return 0


def main(argv: list[str] | None = None) -> int:
    return serve_similarity(read_command_line(SimilaritySettings, argv, prog="python -m similarity_service"))


if __name__ == "__main__":
    sys.exit(main())
