"""The catalogue code: an index version's layout and manifest, its Faiss indexes, text index and filters.

The indexing job writes what these modules read; the similarity service serves it.
"""
