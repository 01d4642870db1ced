"""compliance — system of record and audit-report generator for interpretability in regulated ML.

The Python API for pipelines is :class:`compliance.api.Store`::

    from compliance import Store
    store = Store("sqlite:///compliance.db", actor="ci-pipeline")
    store.add_version("retail-pd", "v5", weights="model.safetensors")
"""

from __future__ import annotations

__version__ = "0.1.0"
FORMULA_VERSION = "saelens-6.54"

__all__ = ["Store", "__version__", "FORMULA_VERSION"]


def __getattr__(name: str):  # lazy, so `import compliance` stays cheap
    if name == "Store":
        from compliance.api import Store

        return Store
    raise AttributeError(name)
