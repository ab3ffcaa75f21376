"""Similarity service: one Faiss index per category, searched by embedding. It never imports torch."""
