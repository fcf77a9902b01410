"""Evaluation: accuracy, calibration, escalation and latency of a router, and the HTML report."""
