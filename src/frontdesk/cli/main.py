"""The ``frontdesk`` command line: one Typer app; each group of commands lives in its own module.

Every command exits 0 on success, 2 on a frontdesk error (the message says what to do next) and
1 when some inputs of a multi-message command could not be routed.
"""

from __future__ import annotations

import sys

import typer

from frontdesk.cli import llm, loop, models, monitor, route, serve, train
from frontdesk.cli.common import console
from frontdesk.errors import FrontdeskError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="frontdesk: hybrid intent classification and routing.")
for module in (train, llm, route, serve, loop, monitor, models):
    module.register(app)


def main() -> None:
    """Console entry point: frontdesk errors become one red line and exit code 2."""
    try:
        rc = app(standalone_mode=False)  # returns the exit code of typer.Exit instead of raising
        sys.exit(rc if isinstance(rc, int) else 0)
    except FrontdeskError as exc:
        console.print(f"[red]error:[/] {exc}")
        sys.exit(2)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        sys.exit(code)
    except Exception as exc:  # usage errors of the (vendored) click layer carry show() and exit_code
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()  # type: ignore[attr-defined]
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        if type(exc).__name__ == "Abort":
            sys.exit(1)
        raise


if __name__ == "__main__":
    main()
