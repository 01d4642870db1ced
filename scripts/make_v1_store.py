"""Write the checked-in store of release 0.1.0 (schema 0001_initial) used by tests/test_upgrade_v1.py.

Run with the 0.1.0 code (commit b7e4cdb) on the path, e.g.::

    git worktree add /tmp/v010 b7e4cdb
    PYTHONPATH=/tmp/v010:/tmp/v010/tests python scripts/make_v1_store.py tests/fixtures/store-0.1.0.sql

It builds a small store through the public API at fixed times (models, versions, deployments, an SAE,
a dataset, a fidelity check, a drift check, a finding, a policy change, failure-mode detection) and
writes it as a SQLite SQL dump (text, a few hundred KB at most; regenerable, never a binary).
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file


def main(out: str) -> None:
    from helpers import small_manifest  # tests/helpers.py of the same release

    from compliance.api import Store

    tmp = Path(tempfile.mkdtemp())
    root = tmp / "bank"
    manifest = small_manifest(root)
    t = datetime(2026, 2, 1, tzinfo=timezone.utc)
    times = iter(t + timedelta(minutes=i) for i in range(10_000))
    url = f"sqlite:///{tmp / 'store.db'}"
    store = Store(url, actor="release-0.1.0", clock=lambda: next(times))
    store.init()
    store.import_manifest(manifest)
    rng = np.random.default_rng(7)
    acts = rng.standard_normal((256, 8)).astype(np.float32)
    save_file({"activations": acts}, str(root / "acts.safetensors"))
    store.check_fidelity("pd-sae-v1", "v2", activations=str(root / "acts.safetensors"))
    ref, cur = root / "data" / "ref.csv", root / "data" / "cur.csv"
    ref.write_text("income,region\n" + "".join(f"{x:.4f},{'north' if x > 0 else 'south'}\n" for x in rng.standard_normal(300)))
    cur.write_text("income,region\n" + "".join(f"{x + 0.8:.4f},{'north' if x > 0.5 else 'south'}\n" for x in rng.standard_normal(300)))
    store.check_drift("retail-pd", "v2", reference=ref, current=cur)
    store.add_finding(model_id="retail-pd", severity="high", title="SAE not revalidated", owner="alice", due="2026-04-30")
    store.set_policy({"validity_days": 60}, comment="shorter validity")
    store.detect_failure_modes(at="2026-03-01T00:00:00Z")
    con = sqlite3.connect(tmp / "store.db")
    Path(out).write_text("\n".join(con.iterdump()) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1])
