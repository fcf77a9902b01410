"""``python -m frontdesk`` runs the CLI."""

from frontdesk.cli.main import main

main()
