"""Labelled outcome files of the sample bank: what the bank knows about its decisions, and when.

The quarterly data files carry every row's ground-truth label (the generator knows the future). A
bank does not: a loan's default flag (``default_12m``) is known 12 months after the application,
a card transaction's fraud flag (``is_fraud``) about 60 days after it. ``outcome_frame`` gives what
the bank knows on ``known_by``: the label where its window has closed, empty where it has not,
plus the protected attribute ``age_band`` banded from the applicant's / card holder's age (the
retail-pd model encodes age: its age probe reaches AUC 0.999).

    python -m sample_data.outcomes [--bank sample_data/generated] [--known-by 2026-10-01]

writes ``outcomes/<population>_<quarter>.parquet`` for every quarter of loans and cards. The
outcome checks then read them with

    compliance check performance retail-pd --version v1 --data outcomes/loans_2025Q3.parquet \\
        --target default_12m --timestamp applied_on --maturity-days 365
    compliance check fairness retail-pd --version v3 --data outcomes/loans_2026Q2.parquet \\
        --protected age_band --target default_12m --timestamp applied_on

(scores come from each version through the sample adapter; the threshold from its weights).
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from .book import QUARTER_FILES
from .data import QUARTERS, SCHEMA

AGE_BANDS = [(18, 25, "18-24"), (25, 35, "25-34"), (35, 50, "35-49"), (50, 65, "50-64"), (65, 200, "65+")]
OUTCOME = {  # population -> (decision time column, age column, maturity in days)
    "loans": ("applied_on", "age", 365),
    "cards": ("timestamp", "customer_age", 60),
}


def age_band(age) -> np.ndarray:
    a = np.asarray(age, dtype=np.float64)
    out = np.full(a.shape, None, dtype=object)
    for lo, hi, name in AGE_BANDS:
        out[(a >= lo) & (a < hi)] = name
    return out


def outcome_frame(frame: pd.DataFrame, population: str, known_by: date) -> pd.DataFrame:
    """The frame as the bank sees it on ``known_by``: labels of immature rows blanked, ``age_band`` added."""
    time_col, age_col, days = OUTCOME[population]
    label = SCHEMA[population]["label"]
    t = pd.to_datetime(frame[time_col])
    t = t.dt.tz_localize(None) if t.dt.tz is not None else t
    known = (t + pd.Timedelta(days=days)) <= pd.Timestamp(known_by)
    out = frame.copy()
    out[label] = np.where(known, frame[label].astype(np.float64), np.nan)
    out["age_band"] = age_band(frame[age_col])
    return out


def write_outcome_files(bank: Path, known_by: date, out: Path | None = None) -> list[Path]:
    """Write ``<out or bank/outcomes>/<population>_<quarter>.parquet`` for loans and cards."""
    out = out or bank / "outcomes"
    written = []
    for population in OUTCOME:
        for q in QUARTERS:
            src = bank / QUARTER_FILES[population].format(q=q)
            dst = out / f"{population}_{q}.parquet"
            dst.parent.mkdir(parents=True, exist_ok=True)
            outcome_frame(pd.read_parquet(src), population, known_by).to_parquet(dst, index=False, compression="zstd")
            written.append(dst)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sample_data.outcomes", description=__doc__.splitlines()[0])
    ap.add_argument("--bank", type=Path, default=Path(__file__).parent / "generated")
    ap.add_argument("--known-by", type=date.fromisoformat, default=date(2026, 10, 1))
    a = ap.parse_args(argv)
    for p in write_outcome_files(a.bank, a.known_by):
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
