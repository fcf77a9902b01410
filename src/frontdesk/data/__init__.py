"""Labelled datasets: load, split and validate the train/validation/test files frontdesk trains on, and
fetch the public benchmark datasets (:mod:`frontdesk.data.fetch`)."""

from frontdesk.data.dataset import Dataset, Example
from frontdesk.data.fetch import DATASETS, DownloadError, convert_dataset, fetch_dataset

__all__ = ["DATASETS", "Dataset", "DownloadError", "Example", "convert_dataset", "fetch_dataset"]
