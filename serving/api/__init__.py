"""The HTTP API of the serving tier (FastAPI): `create_app(components)`."""

from serving.api.app import API_VERSION, create_app

__all__ = ["API_VERSION", "create_app"]
