"""The ``frontdesk`` command line: one Typer app; each group of commands lives in its own module.

Exit codes: 0 success; 1 some inputs of a multi-message command could not be routed (each is
reported on stderr with where it came from); 2 the command could not run — a frontdesk error (bad
config, data or model: the message says what to do next) or a usage error; 130 interrupted.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape

from frontdesk.cli import batch, consume, datasets, llm, loop, models, monitor, plugins, reference, route, serve, train
from frontdesk.cli.common import console, out, plain_help_metavars
from frontdesk.errors import FrontdeskError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="frontdesk: hybrid intent classification and routing.")


def _version(value: bool) -> None:
    if value:
        from frontdesk import __version__

        out.print(f"frontdesk {__version__}", markup=False)
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")] = False,
) -> None:
    """frontdesk: hybrid intent classification and routing."""
for module in (train, llm, route, batch, serve, consume, loop, monitor, models, datasets, plugins, reference):
    module.register(app)
plain_help_metavars()


def main() -> None:
    """Console entry point: frontdesk errors become one red line and exit code 2."""
    try:
        rc = app(standalone_mode=False)  # returns the exit code of typer.Exit instead of raising
        sys.exit(rc if isinstance(rc, int) else 0)
    except FrontdeskError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")  # escaped: hints like pip install 'frontdesk[llm]' stay whole
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        sys.exit(code)
    except Exception as exc:  # usage errors of the (vendored) click layer carry show() and exit_code
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()  # type: ignore[attr-defined]
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        if type(exc).__name__ == "Abort":  # click's Ctrl-C
            sys.exit(130)
        raise


if __name__ == "__main__":
    main()
