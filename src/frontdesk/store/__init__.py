"""The durable store: decisions, feedback and the human-review queue (SQLite or PostgreSQL)."""

from frontdesk.store.store import Feedback, ReviewItem, Store, StoreError

__all__ = ["Feedback", "ReviewItem", "Store", "StoreError"]
