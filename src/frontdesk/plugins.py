"""Plug-ins by name: one registry type for tiers, LLM providers and actions.

Each kind of plug-in has one :class:`PluginRegistry`, which finds a name in three places, in order:

1. registered in code: :func:`~frontdesk.tiers.base.register_tier`, :func:`~frontdesk.llm.registry.register_provider`,
   :func:`~frontdesk.routing.actions.register_action`;
2. built into frontdesk (imported on first use: their optional dependencies may be absent);
3. declared by an installed package under an entry-point group, in its ``pyproject.toml``::

       [project.entry-points."frontdesk.tiers"]
       keywords = "frontdesk_keywords:KeywordTier"      # a Tier subclass whose kind is "keywords"
       [project.entry-points."frontdesk.providers"]
       echo = "frontdesk_keywords:make_echo"            # a provider factory (or a ProviderInfo)
       [project.entry-points."frontdesk.actions"]
       note = "frontdesk_keywords:note"                 # def note(call: ActionCall) -> JSON-able result

Package metadata is read (``importlib.metadata``) only when a name is not found in code or among the
built-ins, or when every name is listed — never at ``import frontdesk`` — and a plug-in's module is
imported only when its name is used. An unknown name is a :class:`~frontdesk.errors.ConfigError` that
lists the known ones and says how to add one; a plug-in that fails to import names its package.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from frontdesk.errors import ConfigError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

log = logging.getLogger("frontdesk.plugins")

T = TypeVar("T")

TIERS_GROUP = "frontdesk.tiers"
PROVIDERS_GROUP = "frontdesk.providers"
ACTIONS_GROUP = "frontdesk.actions"


@dataclass(frozen=True)
class PluginSource:
    """Where a plug-in name comes from: ``origin`` is ``built-in``, ``code`` or ``package NAME VERSION``;
    ``target`` the ``module:attribute`` it is loaded from (None for objects registered in code)."""

    name: str
    origin: str
    target: str | None = None


def _valid_name(name: str) -> bool:
    return bool(name) and name.replace("-", "").replace("_", "").isalnum()


def _package(ep: EntryPoint) -> str:
    """``NAME VERSION`` of the distribution that declares ``ep`` (``an unknown package`` when metadata lacks it)."""
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "an unknown package"
    try:
        return f"{dist.metadata['Name']} {dist.version}"
    except Exception:  # noqa: BLE001 - damaged metadata: still name what we can
        return "an unknown package"


class PluginRegistry(Generic[T]):
    """Named plug-ins of one kind (``what``, e.g. ``"tier kind"``), found in code, built-ins and entry points.

    ``builtins`` maps names to ``"module:attribute"`` targets or to ready objects; a callable returning
    such a mapping is called once, on first use. ``coerce(name, obj)`` turns what was registered or
    loaded into the registry's value and raises :class:`TypeError` or :class:`ValueError` with a
    sentence when it cannot. ``field`` is the config field errors point at; ``how`` says how to register
    one in code (e.g. ``"register_tier('NAME', cls)"``), for the unknown-name error.
    """

    def __init__(
        self,
        what: str,
        group: str,
        *,
        field: str,
        how: str,
        builtins: Mapping[str, str | T] | Callable[[], Mapping[str, str | T]] | None = None,
        coerce: Callable[[str, Any], T] | None = None,
    ) -> None:
        self.what, self.group, self.field, self.how = what, group, field, how
        self._builtin_source = builtins
        self._builtins: dict[str, str | T] | None = None
        self._coerce = coerce or (lambda _name, obj: obj)
        self._registered: dict[str, T] = {}
        self._origins: dict[str, PluginSource] = {}
        self._lock = threading.RLock()

    # -- sources ----------------------------------------------------------------------------------
    def builtin_names(self) -> list[str]:
        """The names frontdesk itself provides (nothing is imported)."""
        return sorted(self._builtin_table())

    def _builtin_table(self) -> dict[str, str | T]:
        with self._lock:
            if self._builtins is None:
                source = self._builtin_source
                self._builtins = dict(source() if callable(source) else (source or {}))
            return self._builtins

    def entry_points(self) -> dict[str, EntryPoint]:
        """The installed packages' entry points of this group (read from metadata, nothing imported)."""
        from importlib.metadata import entry_points  # not at import: reading metadata is for lookups

        try:
            found = entry_points(group=self.group)
        except Exception as exc:  # noqa: BLE001 - broken metadata must not break the built-ins
            log.warning("could not read the %s entry points: %s", self.group, exc)
            return {}
        out: dict[str, EntryPoint] = {}
        for ep in found:
            if ep.name in out and out[ep.name].value != ep.value:
                log.warning("two installed packages declare the %s %r (%s from %s, %s from %s): using the first",
                            self.what, ep.name, out[ep.name].value, _package(out[ep.name]), ep.value, _package(ep))
                continue
            out.setdefault(ep.name, ep)
        return out

    def names(self) -> list[str]:
        """Every name that can be used: registered in code, built in, and installed (not loaded)."""
        with self._lock:
            local = set(self._registered) | set(self._builtin_table())
        return sorted(local | set(self.entry_points()))

    def sources(self) -> list[PluginSource]:
        """Every name with where it comes from (for ``frontdesk plugins``)."""
        with self._lock:
            registered = {n: self._origins.get(n, PluginSource(n, "code")) for n in self._registered}
            builtins = {n: PluginSource(n, "built-in", t if isinstance(t, str) else None) for n, t in self._builtin_table().items()}
        installed = {n: PluginSource(n, f"package {_package(ep)}", ep.value) for n, ep in self.entry_points().items()}
        merged = {**installed, **builtins, **registered}
        return [merged[n] for n in sorted(merged)]

    # -- registering ------------------------------------------------------------------------------
    def register(self, name: str, obj: Any, *, replace: bool = False, origin: PluginSource | None = None) -> T:
        """Make ``obj`` the plug-in called ``name``; returns the registered value.

        A name already registered in code or built in raises :class:`ConfigError` unless ``replace=True``
        (registering the same object again is a no-op).
        """
        if not _valid_name(name):
            raise ConfigError(f"{self.what} name {name!r}: use letters, digits, '-' and '_'", field=self.field)
        try:
            value = self._coerce(name, obj)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{self.what} {name!r}: {exc}", field=self.field) from exc
        with self._lock:
            current = self._registered.get(name)
            taken = (current is not None and current is not value) or (current is None and name in self._builtin_table())
            if taken and not replace:
                raise ConfigError(f"a {self.what} called {name!r} is already registered: pick another name or pass replace=True",
                                  field=self.field)
            self._registered[name] = value
            if origin is not None:
                self._origins[name] = origin
            else:
                self._origins.pop(name, None)
        return value

    def unregister(self, name: str) -> None:
        """Forget a name registered in code or loaded from a package (a built-in comes back on the next lookup)."""
        with self._lock:
            self._registered.pop(name, None)
            self._origins.pop(name, None)

    # -- looking up -------------------------------------------------------------------------------
    def get(self, name: str) -> T:
        """The plug-in called ``name``, importing a built-in or an installed package's module on first use."""
        with self._lock:
            value = self._registered.get(name)
            if value is not None:
                return value
            target = self._builtin_table().get(name)
        if target is not None:
            obj = _load(target) if isinstance(target, str) else target
            return self._remember(name, obj, PluginSource(name, "built-in", target if isinstance(target, str) else None))
        ep = self.entry_points().get(name)
        if ep is None:
            raise ConfigError(self.unknown(name), field=self.field)
        package = _package(ep)
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - any import failure of a plug-in becomes one clear error
            raise ConfigError(f"the {name!r} {self.what}'s entry point {ep.value!r} from {package} failed to load "
                              f"({type(exc).__name__}: {exc}): fix or reinstall {package.split(' ')[0]}, or uninstall it",
                              field=self.field) from exc
        return self._remember(name, obj, PluginSource(name, f"package {package}", ep.value), f" (entry point {ep.value!r} of {package})")

    def _remember(self, name: str, obj: Any, origin: PluginSource, where: str = "") -> T:
        """Keep a loaded built-in or entry point (a name registered meanwhile in code wins)."""
        try:
            value = self._coerce(name, obj)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{self.what} {name!r}{where}: {exc}", field=self.field) from exc
        with self._lock:
            self._registered.setdefault(name, value)
            self._origins.setdefault(name, origin)
            return self._registered[name]

    def unknown(self, name: str) -> str:
        """The sentence for a name nobody provides: the known names and how to add one."""
        known = ", ".join(self.names()) or "none"
        return (f"unknown {self.what} {name!r}: use one of {known} — or add it: {self.how} in code, or install a package "
                f"that declares it under the {self.group!r} entry points (see `frontdesk plugins`)")


def _load(target: str) -> Any:
    """The object a ``module:attribute`` target names."""
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


def registries() -> dict[str, PluginRegistry[Any]]:
    """The three registries by entry-point group (imports the modules that hold them, not the plug-ins)."""
    from frontdesk.llm.registry import PROVIDERS
    from frontdesk.routing.actions import ACTIONS
    from frontdesk.tiers.base import TIERS

    return {TIERS_GROUP: TIERS, PROVIDERS_GROUP: PROVIDERS, ACTIONS_GROUP: ACTIONS}


__all__ = ["ACTIONS_GROUP", "PROVIDERS_GROUP", "TIERS_GROUP", "PluginRegistry", "PluginSource", "registries"]
