"""Torch-side checks: artifact loaders, fidelity, alignment, activation drift, overhead.

This is the only package that imports torch. Nothing on the report path or in
``compliance --help`` may import it: importing this package itself does not, and neither do
its torch-free modules ``headers`` (format detection, shapes, file hashes), ``status``
(pass/warn/fail under a policy), ``serial`` and ``synthetic`` (random artifacts in every format).

Torch modules: ``loaders`` (``load_artifact``), ``fidelity`` (``compute_fidelity``,
``iter_safetensors_batches``), ``downstream`` (splicing, activation capture), ``alignment``
(CKA, feature survival), ``activation_drift``, ``overhead``; ``adapter`` defines the model
adapter protocol.
"""
