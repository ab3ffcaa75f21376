"""`python -m classifier_service` (or `lookalike serve classifier`): the classifier on CLASSIFIER_HOST:CLASSIFIER_PORT.

Flags and environment variables come from classifier_service/settings.py; `--help` lists them.
"""

import sys
from functools import partial

from classifier_service.app import create_app
from classifier_service.settings import ClassifierSettings
from lookalike.serving import serve
from lookalike.settings import read_command_line


def serve_classifier(settings: ClassifierSettings) -> int:
    serve("classifier", partial(create_app, settings), settings.host, settings.port)
    return 0


def main(argv: list[str] | None = None) -> int:
    return serve_classifier(read_command_line(ClassifierSettings, argv, prog="python -m classifier_service"))


if __name__ == "__main__":
    sys.exit(main())
