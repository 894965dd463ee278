"""``lazy_module``: a stand-in for ``import NAME`` that imports NAME on first use.

Validating a config imports every probe kind's module (for its config model); the client
libraries those kinds talk through (boto3, pika, psycopg, requests) are only needed when a
probe runs. Deferring them keeps `controlplane smoke` and `validate` quick to start
(bench/startup). Use it as::

    if TYPE_CHECKING:
        import psycopg
    else:
        psycopg = lazy_module("psycopg")

so type checking sees the real module.
"""

from __future__ import annotations

import importlib
import types
from typing import Any


class _LazyModule(types.ModuleType):
    def __getattr__(self, attr: str) -> Any:
        # The real module is kept once imported: import_module costs microseconds a call,
        # and a lag run reads tens of thousands of attributes (ck.TopicPartition, ...).
        # Attributes are looked up on it each time, so a patched attribute is seen.
        real = self.__dict__.get("_lazy_real")
        if real is None:
            real = importlib.import_module(self.__name__)
            self.__dict__["_lazy_real"] = real
        return getattr(real, attr)


def lazy_module(name: str) -> types.ModuleType:
    """A module object that imports ``name`` when one of its attributes is first read."""
    return _LazyModule(name)
