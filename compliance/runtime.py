"""Process-level settings for the long computations.

:func:`gc_paused`: CPython's cyclic garbage collector runs a pass whenever allocations outnumber
deallocations by a threshold, and its oldest generation walks every live container object. A
report over two million checks allocates millions of short-lived rows and keeps a large context
alive, so the passes cost ~10 % of it (measured: ``export`` 92 s with the collector, 84 s
without, the same peak memory; ``status`` 11.0 s and 9.6 s; the bulk import and the YAML parse
likewise) and collect nothing: these computations make no reference cycles worth collecting.
The collector is switched off for the duration and back on after (nested uses leave it to the
outermost)."""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off inside the block (reference counting still frees every
    object as soon as it is unused), back on after if it was on."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def without_gc_passes(fn: F) -> F:
    """Run ``fn`` under :func:`gc_paused`."""
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with gc_paused():
            return fn(*args, **kwargs)
    return run  # type: ignore[return-value]
