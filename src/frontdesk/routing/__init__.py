"""Routing: where a decided message goes — queues and priorities, agent tools, model tiers, sinks."""
