"""The cascade: the Router runs the tiers cheapest first, gates each answer and builds the Decision."""
