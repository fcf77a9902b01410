"""Gating: calibrated confidence and the gate that turns a tier's scores into accept / flag / escalate."""
