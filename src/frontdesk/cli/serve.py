"""``frontdesk init``, ``serve`` and ``keys``: the starter config, the HTTP service and its API keys."""

from __future__ import annotations

import logging.config
from pathlib import Path
from typing import Annotated, Optional

import typer

from frontdesk.cli.common import LLMModelOpt, LLMOpt, LLMUrlOpt, console, llm_params, out
from frontdesk.errors import ConfigError
from frontdesk.tiers.llm import LLMParams


def register(app: typer.Typer) -> None:
    """Add ``init``, ``serve`` and ``keys create`` to ``app``."""

    @app.command()
    def init(
        path: Annotated[Path, typer.Argument(help="where to write the starter config")] = Path("frontdesk.yaml"),
        force: Annotated[bool, typer.Option(help="overwrite an existing file")] = False,
    ) -> None:
        """Write a commented starter frontdesk.yaml."""
        from frontdesk.config import STARTER

        if path.exists() and not force:
            raise ConfigError(f"{path} exists: pass --force to overwrite it", field="init")
        path.write_text(STARTER, encoding="utf-8")
        out.print(f"wrote {path} — set 'model:' to a directory from `frontdesk train`, then `frontdesk route --config {path}`. "
                  "Before `frontdesk serve --config`, add an API key under auth.keys (`frontdesk keys create --name ops "
                  "--scope admin`): auth is on, and without a key every request gets 401.", markup=False)


    @app.command()
    def serve(
        config: Annotated[Optional[Path], typer.Option("--config", help="frontdesk.yaml (production mode)")] = None,
        model: Annotated[Optional[Path], typer.Option("--model", help="model directory: development mode, auth OFF")] = None,
        host: Annotated[Optional[str], typer.Option(help="bind address (default: config's, 127.0.0.1)")] = None,
        port: Annotated[Optional[int], typer.Option(help="port (default: config's, 8080)")] = None,
        workers: Annotated[int, typer.Option(help="worker processes (needs --config)")] = 1,
        log_level: Annotated[str, typer.Option(help="log level of uvicorn and frontdesk (debug, info, warning, error)")] = "info",
        access_log: Annotated[bool, typer.Option(help="one log line per request: method, path, status, latency, request id")] = True,
        http: Annotated[str, typer.Option(help="HTTP parser: auto | h11 | httptools (C, faster; pip install httptools)")] = "auto",
        loop: Annotated[str, typer.Option(help="event loop: auto | asyncio | uvloop (faster; pip install uvloop)")] = "auto",
        llm: LLMOpt = None,
        llm_model: LLMModelOpt = None,
        llm_base_url: LLMUrlOpt = None,
    ) -> None:
        """Run the HTTP service (FastAPI + uvicorn). SIGTERM/Ctrl-C: requests in flight are answered, then it stops."""
        import os

        import uvicorn

        from frontdesk.config import AuthConfig, FrontdeskConfig, load_config
        from frontdesk.server.app import create_app

        if http not in ("auto", "h11", "httptools") or loop not in ("auto", "asyncio", "uvloop"):
            raise ConfigError("use --http auto|h11|httptools and --loop auto|asyncio|uvloop", field="--http/--loop")
        for name, wanted in (("httptools", http), ("uvloop", loop)):
            if wanted == name:
                try:
                    __import__(name)
                except ImportError:
                    raise ConfigError(f"--{'http' if name == 'httptools' else 'loop'} {name} needs the {name} package: "
                                      f"pip install {name}", field="serve") from None
        if (model is None) == (config is None):
            raise ConfigError("give exactly one of --config (production) or --model (development, no auth)", field="serve")
        params = llm_params(llm, llm_model, llm_base_url)
        logging_config = _log_config(log_level, access_log)
        logging.config.dictConfig(logging_config)  # now, so create_app's warnings are formatted like the rest
        if config is not None:
            cfg = load_config(config)
            bind_host, bind_port = host or cfg.server.host, port or cfg.server.port
            _warn_about_open_port(cfg.auth.enabled, bind_host, bind_port)
            if params is not None:
                if workers > 1:
                    raise ConfigError("with --workers, put the LLM settings in the config's llm: section", field="--llm")
                cfg = cfg.model_copy(update={"llm": LLMParams(**params)})
            if workers > 1:
                os.environ["FRONTDESK_CONFIG"] = str(config.resolve())
                uvicorn.run("frontdesk.server.app:app_from_env", factory=True, host=bind_host, port=bind_port,
                            workers=workers, log_level=log_level, access_log=False, log_config=logging_config,
                            http=http, loop=loop)
                return
            app_ = create_app(cfg if params is not None else config)
        else:
            cfg = FrontdeskConfig(model=model.resolve(), auth=AuthConfig(enabled=False), store="sqlite:///frontdesk-dev.db",  # type: ignore[union-attr]
                                  llm=LLMParams(**params) if params else None)
            bind_host, bind_port = host or "127.0.0.1", port or 8080
            console.print("[bold red]DEVELOPMENT MODE: authentication is OFF and decisions go to ./frontdesk-dev.db. "
                          "Use --config frontdesk.yaml in production.[/]")
            _warn_about_open_port(False, bind_host, bind_port)
            app_ = create_app(cfg)
        uvicorn.run(app_, host=bind_host, port=bind_port, log_level=log_level, access_log=False, log_config=logging_config,
                    http=http, loop=loop)


    keys_app = typer.Typer(help="API keys for the service.", no_args_is_help=True)
    app.add_typer(keys_app, name="keys")


    @keys_app.command("create")
    def keys_create(
        name: Annotated[str, typer.Option(help="who the key is for")],
        scope: Annotated[list[str], typer.Option(help="route and/or admin (repeatable)")] = ["route"],  # noqa: B006
    ) -> None:
        """Make a new API key: prints the key once and the auth.keys entry for frontdesk.yaml."""
        from frontdesk.server.auth import hash_key, new_key

        bad = sorted(set(scope) - {"route", "admin"})
        if bad:
            raise ConfigError(f"unknown scope(s) {bad}: use route and/or admin", field="--scope")
        key = new_key()
        console.print("Key (shown once, store it in your secret manager):")
        out.print(key, markup=False)
        console.print("Add to frontdesk.yaml under auth.keys:")
        console.print(f"  - name: {name}\n    sha256: {hash_key(key)}\n    scopes: [{', '.join(scope)}]", markup=False)


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _warn_about_open_port(auth_enabled: bool, host: str, port: int) -> None:
    """Warn loudly when a service without auth listens beyond loopback (create_app warns about auth without keys)."""
    if not auth_enabled and not _is_loopback(host):
        console.print(f"[bold red]warning: AUTH IS OFF and the service listens on {host}:{port}: anyone who can reach "
                      "this port can route messages, read the review queue (customer texts) and reload the config. "
                      "Enable auth with keys in the config, or bind 127.0.0.1.[/]")


def _log_config(level: str, access: bool) -> dict:
    """uvicorn's logging config plus the ``frontdesk`` loggers (stderr), applied in every worker process."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    name = level.upper()
    if name not in ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "TRACE"):
        raise ConfigError(f"unknown log level {level!r}: use debug, info, warning or error", field="--log-level")
    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg["formatters"]["frontdesk"] = {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    cfg["handlers"]["frontdesk"] = {"class": "logging.StreamHandler", "formatter": "frontdesk", "stream": "ext://sys.stderr"}
    cfg["loggers"]["frontdesk"] = {"handlers": ["frontdesk"], "level": "DEBUG" if name == "TRACE" else name, "propagate": False}
    if not access:
        cfg["loggers"]["frontdesk.access"] = {"level": "WARNING"}
    return cfg
