"""Typed registries for methods, regularizers, entities and model presets.

Modelled on lm-evaluation-harness's registry: a decorator registers an object under a name,
the modules that hold registrations are imported only when a registry is first queried, and
an unknown name is an error that lists the valid ones.

Third-party code registers through the ``snap_bench.plugins`` entry-point group or the
``SNAP_BENCH_PLUGINS`` environment variable (comma-separated module names or ``.py`` paths).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import sys
from pathlib import Path
from typing import Callable, Generic, Iterable, TypeVar

from snap_bench.errors import SnapBenchError

T = TypeVar("T")


class UnknownNameError(SnapBenchError):
    pass


class Registry(Generic[T]):
    """A name -> object mapping for one kind of component.

    ``packages`` are imported module by module on first use, so a new method is one new file
    in ``methods/`` with a ``@register_method`` decorator and no edit anywhere else.
    """

    def __init__(self, kind: str, packages: Iterable[str] = (), plural: str | None = None,
                 complete: Callable[[T], T] | None = None):
        self.kind = kind
        self._complete = complete  # checks an object against its protocol and fills optional hooks
        self.plural = plural or f"{kind}s"
        self._packages = tuple(packages)
        self._items: dict[str, T] = {}
        self._discovered = False
        self._loaders: list[Callable[["Registry[T]"], None]] = []

    def register(self, name: str, obj: T | None = None, *, replace: bool = False):
        """Register ``obj`` under ``name``; usable as ``@registry.register("name")``."""

        def _add(o: T) -> T:
            if self._complete is not None:
                o = self._complete(o)
            if not replace and name in self._items and self._items[name] is not o:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = o
            return o

        return _add(obj) if obj is not None else _add

    def add_loader(self, loader: Callable[["Registry[T]"], None]) -> None:
        """A callable that fills the registry lazily (e.g. scanning pack folders)."""
        self._loaders.append(loader)

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        for pkg_name in self._packages:
            pkg = importlib.import_module(pkg_name)
            for info in pkgutil.iter_modules(getattr(pkg, "__path__", [])):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{pkg_name}.{info.name}")
        for loader in self._loaders:
            loader(self)
        load_plugins()

    def get(self, name: str) -> T:
        self._discover()
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; valid {self.plural}: {', '.join(self.names())}"
            ) from None

    def __contains__(self, name: str) -> bool:
        self._discover()
        return name in self._items

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        self._discover()
        return sorted(self._items.items())


_plugins_loaded: set[str] = set()


def load_plugins() -> None:
    """Import third-party registration modules (entry points and SNAP_BENCH_PLUGINS)."""
    specs: list[str] = []
    try:
        from importlib.metadata import entry_points

        specs += [ep.value for ep in entry_points(group="snap_bench.plugins")]
    except Exception:  # metadata backends differ across Pythons; plugins are optional
        pass
    specs += [s.strip() for s in os.environ.get("SNAP_BENCH_PLUGINS", "").split(",") if s.strip()]
    for spec in specs:
        if spec in _plugins_loaded:
            continue
        _plugins_loaded.add(spec)
        try:
            if spec.endswith(".py"):
                path = Path(spec)
                if not path.is_file():
                    raise SnapBenchError(f"plugin file {spec} does not exist")
                mod_name = f"snap_bench_plugin_{path.stem}"
                module_spec = importlib.util.spec_from_file_location(mod_name, path)
                module = importlib.util.module_from_spec(module_spec)
                sys.modules[mod_name] = module
                module_spec.loader.exec_module(module)
            else:
                importlib.import_module(spec.split(":")[0])
        except SnapBenchError:
            raise
        except Exception as exc:
            raise SnapBenchError(f"plugin {spec}: failed to import ({type(exc).__name__}: {exc})") from None


def _complete_method(cls):
    from snap_bench.methods.base import complete_method  # lazy: method modules import this one

    return complete_method(cls)


def _complete_regularizer(cls):
    from snap_bench.regularizers.base import complete_regularizer  # lazy: regularizer modules import this one

    return complete_regularizer(cls)


METHODS: Registry = Registry("method", ["snap_bench.methods"], complete=_complete_method)
REGULARIZERS: Registry = Registry("regularizer", ["snap_bench.regularizers"], complete=_complete_regularizer)
ENTITIES: Registry = Registry("entity", ["snap_bench.tasks"], plural="entities")
MODELS: Registry = Registry("model", ["snap_bench.models"])
JUDGES: Registry = Registry("judge", ["snap_bench.evaluate.judges"])


def register_method(name: str):
    """Register a Method class: ``@register_method("snap") class Snap: ...``. The class is checked
    against the ``Method`` protocol and its missing optional hooks get their defaults."""
    return METHODS.register(name)


def register_regularizer(name: str):
    """Register a Regularizer class: ``@register_regularizer("swd") class SWD: ...``. The class is
    checked against the ``Regularizer`` protocol and its missing optional hooks get their defaults."""
    return REGULARIZERS.register(name)
