"""Unlearning methods, one module each. Copy ``snap.py`` to start a new one.

A method is a class registered with ``@register_method("name")`` that supplies its config
dataclass, its data streams and its loss (see ``base.py``). Every module in this folder is
imported when the method registry is first used, so a new file needs no edit anywhere else.
"""

from snap_bench.methods.base import Method, UnlearnData, nll_per_stream  # noqa: F401
