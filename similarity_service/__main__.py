"""`python -m similarity_service`: serve the similarity search on SIMILARITY_HOST:SIMILARITY_PORT."""

from lookalike.serving import serve
from similarity_service.settings import SimilaritySettings

if __name__ == "__main__":
    settings = SimilaritySettings()
    serve("similarity_service.app:create_app", settings.host, settings.port)
