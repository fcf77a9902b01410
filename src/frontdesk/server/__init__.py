"""The HTTP service: FastAPI app, API-key auth, Prometheus metrics, hot reload."""

from frontdesk.server.app import create_app
from frontdesk.server.auth import hash_key, new_key

__all__ = ["create_app", "hash_key", "new_key"]
