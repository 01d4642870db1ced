"""The collector pause around long computations (compliance.runtime)."""

from __future__ import annotations

import gc

import pytest

from compliance.runtime import gc_paused, without_gc_passes


def test_paused_inside_back_on_after_even_on_error_and_nested_leaves_it_to_the_outermost():
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner block does not switch it back on
    assert gc.isenabled()
    with pytest.raises(ValueError):
        with gc_paused():
            raise ValueError("boom")
    assert gc.isenabled()


def test_a_collector_switched_off_by_the_caller_stays_off():
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_decorated_function_runs_without_collector_passes_and_keeps_its_name():
    @without_gc_passes
    def work(x):
        """Doc."""
        return x, gc.isenabled()

    assert work(3) == (3, False) and gc.isenabled()
    assert work.__name__ == "work" and work.__doc__ == "Doc."
