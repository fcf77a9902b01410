"""Small helpers every stage shares — one of each: retries, TTL caches, text keys, progress, atomic directories."""
