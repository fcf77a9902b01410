"""Labelled datasets: load, split and validate the train/validation/test files frontdesk trains on."""

from frontdesk.data.dataset import Dataset, Example

__all__ = ["Dataset", "Example"]
