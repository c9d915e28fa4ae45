"""Semantic search over MyAnimeList reviews that recommends the anime behind the best-matching reviews."""

__version__ = "0.1.0"
