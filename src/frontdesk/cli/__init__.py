"""The ``frontdesk`` command line."""

from frontdesk.cli.main import main

__all__ = ["main"]
