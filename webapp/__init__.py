"""HTTP edge of the recommender: the JSON API (``/api/v1``, the reference ``/search``) and the web page."""

from webapp.app import create_app

__all__ = ["create_app"]
