"""Activations carry the version that produced them (issue 21): `compliance check capture` writes
the weights' SHA-256 into the safetensors metadata, and a fidelity check refuses activations of
another version (nothing recorded) instead of recording a pass for the wrong version."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compliance.interp.headers import activation_provenance
from compliance.interp.synthetic import write_activations
from tests.test_poison import snapshot

pytestmark = pytest.mark.slow
HOOK = "blocks.1.hook_resid_pre"


@pytest.fixture
def pd_store(cli, bank):
    assert cli("model", "add", "retail-pd", "--name", "Retail PD", "--owner", "alice", "--tier", "1", "--use", "PD",
               "--adapter", "sample_data.adapter:load")[0] == 0
    for v in ("v1", "v3"):
        rc, _, err = cli("version", "add", "retail-pd", v, "--weights", bank / f"models/retail-pd/{v}.safetensors")
        assert rc == 0, err
    rc, _, err = cli("artifact", "add", "retail-pd", "--kind", "sae", "--bound-version", "v1",
                     "--path", bank / "artifacts/retail-pd/sae-l1-v1", "--id", "pd-sae", "--hook", HOOK)
    assert rc == 0, err
    return cli


def test_activations_of_another_version_are_refused(pd_store, bank, tmp_path):
    cli = pd_store
    data = bank / "data/loans_2025Q4.parquet"
    acts = tmp_path / "acts-v1.safetensors"
    rc, out, err = cli("check", "capture", "retail-pd", "v1", "--hook", HOOK, "--data", data, "--out", acts,
                       "--max-rows", "2000", "--json")
    assert rc == 0, err
    prov = activation_provenance(acts)
    assert prov["version"] == "v1" and prov["weights_sha256"] == json.loads(out)["weights_sha256"]

    before = snapshot(cli.url)
    rc, out, err = cli("check", "fidelity", "pd-sae", "--version", "v3", "--activations", acts)
    assert rc == 1 and "captured on retail-pd v1" in err and "not on retail-pd v3" in err, (out, err)
    assert snapshot(cli.url) == before  # refused: nothing recorded

    rc, out, err = cli("check", "fidelity", "pd-sae", "--version", "v1", "--activations", acts, "--json")
    assert rc == 0, err
    c = json.loads(out)
    assert c["parameters"]["activations_provenance"] == "verified" and c["explained_variance"] > 0.5


def test_activations_without_provenance_are_recorded_as_such(pd_store, tmp_path):
    cli = pd_store
    plain = tmp_path / "plain.safetensors"
    rng = np.random.default_rng(0)
    rc, out, _ = cli("artifact", "show", "pd-sae", "--json")
    d_in = json.loads(out)["d_in"]
    write_activations(plain, {"activations": rng.standard_normal((300, d_in)).astype(np.float32)})
    rc, out, err = cli("check", "fidelity", "pd-sae", "--version", "v3", "--activations", plain, "--json")
    assert rc == 0, err
    assert json.loads(out)["parameters"]["activations_provenance"] == "none"
