"""Torch-side checks: artifact loaders, fidelity, alignment, activation drift, overhead.

This is the only package that imports torch. Nothing on the report path or in
``compliance --help`` may import it.
"""
