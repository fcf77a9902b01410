"""``python -m frontdesk`` runs the CLI."""

from .cli import main

main()
