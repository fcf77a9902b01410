"""Intake: what happens to a raw message before any tier sees it — cleanup, language, duplicates."""
