"""`python -m classifier_service`: serve the classifier on CLASSIFIER_HOST:CLASSIFIER_PORT."""

from classifier_service.settings import ClassifierSettings
from lookalike.serving import serve

if __name__ == "__main__":
    settings = ClassifierSettings()
    serve("classifier_service.app:create_app", settings.host, settings.port)
