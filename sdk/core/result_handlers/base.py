"""The plugin guide's import path, ``core.result_handlers.base``, as a public alias of :mod:`rh_sdk`.

Installing rh-host installs this module, so the guide's code runs as printed in any Python process::

    from core.result_handlers.base import ResultHandler, get_registry

``core`` and ``core.result_handlers`` are namespace packages (no ``__init__.py``): a project's own
``core`` package keeps precedence over them, and one that is itself a namespace package gains this
module beside its own. The names are rh_sdk's own objects, not copies: a handler written against either
path is the same class to the registry, the runner and ``rh-host``.
"""

from rh_sdk import DEFAULT_PRIORITY, HandlerOutcome, HandlerRegistry, ResultHandler, get_registry

__all__ = ["DEFAULT_PRIORITY", "HandlerOutcome", "HandlerRegistry", "ResultHandler", "get_registry"]
