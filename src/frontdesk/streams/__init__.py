"""Streams: consume a Redis Stream with a consumer group, one stored decision per entry, dead letters.

``frontdesk consume --config frontdesk.yaml --from redis://HOST:6379/inbound --group frontdesk --consumer w1``
runs a :class:`StreamConsumer`; see :mod:`frontdesk.streams.consumer` for the guarantees.
"""

from frontdesk.streams.consumer import ConsumerSettings, ConsumerStats, StreamConsumer, default_consumer_name, read_dead_letters
from frontdesk.streams.entries import ENTRY_FORMAT, MalformedEntry, entry_decision_id, entry_message
from frontdesk.streams.source import StreamSource

__all__ = [
    "ENTRY_FORMAT", "ConsumerSettings", "ConsumerStats", "MalformedEntry", "StreamConsumer", "StreamSource",
    "default_consumer_name", "entry_decision_id", "entry_message", "read_dead_letters",
]
