"""`python -m classifier_service` (or `lookalike serve classifier`): photo in, embedding and category
probabilities out, on CLASSIFIER_HOST:CLASSIFIER_PORT."""

import sys

from classifier_service.app import create_app
from classifier_service.settings import ClassifierSettings
from lookalike.serving import service_program

PROGRAM = service_program("classifier", ClassifierSettings, create_app, prog="python -m classifier_service")

if __name__ == "__main__":
    sys.exit(PROGRAM.main())
