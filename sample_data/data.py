"""Synthetic production data for the sample bank, one quarter at a time.

Three populations, each generated from a fixed seed per (domain, quarter) with numpy only:

- ``loans``: retail loan applications (retail-pd, collections-priority), label ``default_12m``.
- ``cards``: card transactions (card-fraud), label ``is_fraud``.
- ``sme``: small-business credit-limit applications (sme-limit), label ``limit_breach_12m``.

The macro story (quarter by quarter, see ``MACRO``): the policy rate climbs from 4.00 % to 6.75 %,
unemployment in the North region rises from 4.5 % to 9.5 % from 2026Q1, utilisation and
debt-to-income follow, hospitality SMEs come under energy-cost stress in 2026, and in 2026Q3 a
new merchant category (``crypto_exchange``) appears in card traffic with its own fraud pattern.
Labels are drawn from a logistic ground truth that the models never see.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

QUARTERS = ["2025Q2", "2025Q3", "2025Q4", "2026Q1", "2026Q2", "2026Q3"]

# per quarter: policy rate (%), unemployment by region (%), hospitality stress, crypto share
MACRO = {
    "2025Q2": dict(rate=4.00, north_unemp=4.5, stress_hosp=0.0, crypto=0.00, contactless_fraud=0.0),
    "2025Q3": dict(rate=4.00, north_unemp=4.6, stress_hosp=0.0, crypto=0.00, contactless_fraud=0.0),
    "2025Q4": dict(rate=4.50, north_unemp=5.0, stress_hosp=0.1, crypto=0.00, contactless_fraud=0.2),
    "2026Q1": dict(rate=5.25, north_unemp=6.5, stress_hosp=0.4, crypto=0.00, contactless_fraud=0.4),
    "2026Q2": dict(rate=6.00, north_unemp=8.0, stress_hosp=0.7, crypto=0.00, contactless_fraud=0.6),
    "2026Q3": dict(rate=6.75, north_unemp=9.5, stress_hosp=1.0, crypto=0.25, contactless_fraud=0.8),
}
BASE_UNEMP = 4.5
REGIONS = ["Capital", "North", "South", "East", "West"]
REGION_P = [0.25, 0.20, 0.20, 0.20, 0.15]

# Encoding schema per domain: numeric columns (name, log-transform?) and categorical columns.
SCHEMA = {
    "loans": dict(
        numeric=[("income", True), ("debt_to_income", False), ("credit_utilisation", False),
                 ("delinquencies_24m", False), ("customer_tenure_months", False), ("age", False),
                 ("loan_amount", True), ("interest_rate", False), ("open_accounts", False)],
        categorical=["region", "product", "employment_type"],
        label="default_12m",
    ),
    "cards": dict(
        numeric=[("amount", True), ("hour", False), ("velocity_1h", False), ("velocity_24h", False),
                 ("card_age_days", True), ("distance_from_home_km", True), ("customer_age", False)],
        categorical=["merchant_category", "country", "channel"],
        label="is_fraud",
    ),
    "sme": dict(
        numeric=[("annual_turnover", True), ("years_trading", False), ("requested_limit", True),
                 ("overdraft_utilisation", False), ("late_payments_12m", False),
                 ("employees", True), ("cash_buffer_days", False)],
        categorical=["sector", "region"],
        label="limit_breach_12m",
    ),
}

QUARTER_START = {
    "2025Q2": "2025-04-01", "2025Q3": "2025-07-01", "2025Q4": "2025-10-01",
    "2026Q1": "2026-01-01", "2026Q2": "2026-04-01", "2026Q3": "2026-07-01",
}
QUARTER_END = {
    "2025Q2": "2025-06-30", "2025Q3": "2025-09-30", "2025Q4": "2025-12-31",
    "2026Q1": "2026-03-31", "2026Q2": "2026-06-30", "2026Q3": "2026-09-30",
}
_DOMAIN_SEED = {"loans": 11, "cards": 23, "sme": 37}


def _rng(seed: int, domain: str, quarter: str) -> np.random.Generator:
    return np.random.default_rng([seed, _DOMAIN_SEED[domain], QUARTERS.index(quarter)])


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _dates(rng, quarter: str, n: int) -> np.ndarray:
    start = np.datetime64(QUARTER_START[quarter])
    days = (np.datetime64(QUARTER_END[quarter]) - start).astype(int) + 1
    return start + rng.integers(0, days, n).astype("timedelta64[D]")


def loans(quarter: str, n: int, seed: int) -> pd.DataFrame:
    m = MACRO[quarter]
    rng = _rng(seed, "loans", quarter)
    region = rng.choice(REGIONS, n, p=REGION_P)
    product = rng.choice(["personal_loan", "credit_card", "auto_loan", "mortgage_topup"], n,
                         p=[0.35, 0.35, 0.20, 0.10])
    employment = rng.choice(["salaried", "self_employed", "contractor", "retired"], n,
                            p=[0.65, 0.15, 0.12, 0.08])
    retired = employment == "retired"
    age = np.where(retired, 60 + rng.gamma(2.0, 4.0, n), 21 + rng.gamma(3.0, 6.5, n)).clip(18, 95)
    unemp = np.where(region == "North", m["north_unemp"], BASE_UNEMP)
    stress = (unemp - BASE_UNEMP) / 5.0 + (m["rate"] - 4.0) / 2.75  # 0 .. ~2
    log_inc = (10.6 + 0.35 * (region == "Capital") - 0.15 * (region == "North")
               - 0.25 * retired + rng.normal(0, 0.45, n) + 0.25 * rng.normal(0, 1, n) * (employment == "self_employed"))
    income = np.exp(log_inc)
    amt_mu = np.select([product == "personal_loan", product == "credit_card", product == "auto_loan"],
                       [9.2, 8.3, 9.8], 10.6)
    loan_amount = np.exp(amt_mu + rng.normal(0, 0.5, n))
    spread = np.select([product == "personal_loan", product == "credit_card", product == "auto_loan"],
                       [4.5, 14.0, 3.0], 1.8)
    interest_rate = m["rate"] + spread + rng.normal(0, 1.2, n)
    latent_risk = rng.normal(0, 1, n)  # unobserved borrower quality
    util = _sigmoid(-0.7 + 0.8 * latent_risk + 0.6 * stress + rng.normal(0, 0.6, n))
    dti = (0.22 + 0.06 * latent_risk + 0.03 * (m["rate"] - 4.0) + 0.04 * stress
           + loan_amount * interest_rate / 100.0 / income * 0.8 + rng.normal(0, 0.05, n)).clip(0.0, 1.5)
    delinq = rng.poisson(0.25 * np.exp(0.6 * latent_risk + 0.35 * stress))
    tenure = rng.exponential(48.0, n).round()
    open_accounts = rng.poisson(3.0 + 1.0 * (product == "credit_card"))
    z = (-3.6 + 1.6 * (util - 0.35) / 0.2 * 0.5 + 2.2 * (dti - 0.3) + 0.55 * np.minimum(delinq, 4)
         - 0.45 * (log_inc - 10.6) / 0.45 - 0.004 * tenure + 0.06 * (interest_rate - 10)
         + 0.25 * (employment == "contractor") + 0.2 * (employment == "self_employed")
         + 0.18 * (unemp - BASE_UNEMP) + 0.35 * latent_risk - 0.008 * (age - 40))
    default = (rng.random(n) < _sigmoid(z)).astype(np.int8)
    return pd.DataFrame({
        "application_id": [f"L{quarter}-{i:06d}" for i in range(n)],
        "applied_on": _dates(rng, quarter, n),
        "income": income.round(0), "debt_to_income": dti.round(4), "credit_utilisation": util.round(4),
        "delinquencies_24m": delinq.astype(np.int64), "customer_tenure_months": tenure.astype(np.int64),
        "age": age.round(0).astype(np.int64), "loan_amount": loan_amount.round(0),
        "interest_rate": interest_rate.round(3), "open_accounts": open_accounts.astype(np.int64),
        "region": region, "product": product, "employment_type": employment,
        "default_12m": default,
    })


CARD_CATEGORIES = ["grocery", "fuel", "restaurants", "travel", "electronics", "online_retail", "gambling"]


def cards(quarter: str, n: int, seed: int) -> pd.DataFrame:
    m = MACRO[quarter]
    rng = _rng(seed, "cards", quarter)
    cats = CARD_CATEGORIES + ["crypto_exchange"]
    base_p = np.array([0.30, 0.12, 0.16, 0.06, 0.07, 0.25, 0.04])
    p = np.concatenate([base_p * (1 - m["crypto"]), [m["crypto"]]])
    cat = rng.choice(cats, n, p=p / p.sum())
    amt_mu = pd.Series(cat).map({"grocery": 3.4, "fuel": 3.9, "restaurants": 3.5, "travel": 5.6,
                                 "electronics": 5.2, "online_retail": 3.9, "gambling": 4.2,
                                 "crypto_exchange": 8.0}).to_numpy()
    amount = np.exp(amt_mu + rng.normal(0, 0.7, n))
    online_cat = np.isin(cat, ["online_retail", "gambling", "crypto_exchange"])
    channel = np.where(online_cat, np.where(rng.random(n) < 0.92, "online", "contactless"),
                       rng.choice(["chip", "contactless", "online", "atm"], n, p=[0.30, 0.52, 0.10, 0.08]))
    country = rng.choice(["domestic", "eu", "us", "other"], n, p=[0.86, 0.08, 0.04, 0.02])
    country = np.where(cat == "crypto_exchange", rng.choice(["domestic", "eu", "other"], n, p=[0.2, 0.3, 0.5]), country)
    night = rng.random(n) < 0.12
    hour = np.where(night, rng.integers(0, 6, n), np.clip(rng.normal(14.5, 3.5, n), 6, 23).astype(int))
    crypto = cat == "crypto_exchange"  # 2026Q3: bot-driven bursts of large night-time purchases
    hour = np.where(crypto & (rng.random(n) < 0.6), rng.integers(0, 5, n), hour)
    vel1 = rng.poisson(np.where(crypto, 8.0, 0.4))
    vel24 = vel1 + rng.poisson(3.0, n)
    card_age = np.where(crypto, rng.exponential(20.0, n), rng.exponential(700.0, n)) + 1
    dist = np.exp(rng.normal(2.0, 1.2, n) + 2.0 * (country != "domestic") + 1.5 * crypto)
    cust_age = np.clip(rng.normal(44, 15, n), 18, 95).round()
    fraud_driver = rng.random(n) < 0.035  # a slice of traffic driven by a fraud ring
    vel1 = vel1 + fraud_driver * rng.poisson(2.5, n)
    amount = amount * np.where(fraud_driver, np.exp(rng.normal(0.6, 0.4, n)), 1.0)
    z = (-5.4 + 2.2 * fraud_driver + 0.6 * (channel == "online") + 0.7 * ((hour < 6) & (hour >= 0))
         + 0.8 * (country == "other") + 0.4 * (country == "us") + 0.35 * np.minimum(vel1, 6)
         + 0.35 * (np.log(amount) - 4.0) + 0.8 * np.isin(cat, ["electronics", "gambling"])
         + 0.5 * (cat == "travel") - 0.45 * np.log(card_age / 100.0).clip(-3, 3)
         + m["contactless_fraud"] * 0.9 * (channel == "contactless")
         + 2.4 * (cat == "crypto_exchange") - 0.01 * (cust_age - 44))
    fraud = (rng.random(n) < _sigmoid(z)).astype(np.int8)
    ts = _dates(rng, quarter, n).astype("datetime64[s]") + (hour * 3600 + rng.integers(0, 3600, n)).astype("timedelta64[s]")
    return pd.DataFrame({
        "transaction_id": [f"T{quarter}-{i:06d}" for i in range(n)],
        "timestamp": ts,
        "amount": amount.round(2), "hour": hour.astype(np.int64), "velocity_1h": vel1.astype(np.int64),
        "velocity_24h": (vel24 + fraud_driver * rng.poisson(3.0, n) + crypto * rng.poisson(30.0, n)).astype(np.int64),
        "card_age_days": card_age.round(0), "distance_from_home_km": dist.round(1),
        "customer_age": cust_age.astype(np.int64),
        "merchant_category": cat, "country": country, "channel": channel,
        "is_fraud": fraud,
    })


SECTORS = ["retail", "hospitality", "construction", "manufacturing", "professional_services", "agriculture"]


def sme(quarter: str, n: int, seed: int) -> pd.DataFrame:
    m = MACRO[quarter]
    rng = _rng(seed, "sme", quarter)
    sector = rng.choice(SECTORS, n, p=[0.22, 0.16, 0.17, 0.12, 0.25, 0.08])
    region = rng.choice(REGIONS, n, p=REGION_P)
    hosp = sector == "hospitality"
    unemp = np.where(region == "North", m["north_unemp"], BASE_UNEMP)
    years = rng.gamma(2.0, 4.0, n).round(1)
    log_turn = 12.3 + 0.08 * years + rng.normal(0, 0.8, n) - 0.3 * m["stress_hosp"] * hosp
    employees = np.exp(0.8 * (log_turn - 11.0) + rng.normal(0, 0.5, n)).clip(1, None).round()
    req_limit = np.exp(log_turn - 2.2 + rng.normal(0, 0.4, n) + 0.25 * m["stress_hosp"] * hosp)
    quality = rng.normal(0, 1, n)
    od_util = _sigmoid(-0.6 + 0.7 * quality + 1.2 * m["stress_hosp"] * hosp + 0.1 * (m["rate"] - 4.0)
                       + 0.08 * (unemp - BASE_UNEMP) + rng.normal(0, 0.5, n))
    late = rng.poisson(0.4 * np.exp(0.6 * quality + 0.7 * m["stress_hosp"] * hosp))
    cash_days = np.clip(rng.gamma(3.0, 15.0, n) * np.exp(-0.3 * quality - 0.4 * m["stress_hosp"] * hosp), 0, 365).round()
    z = (-3.2 + 2.0 * (od_util - 0.4) + 0.45 * np.minimum(late, 5) - 0.012 * cash_days - 0.06 * years
         + 0.3 * (np.log(req_limit) - log_turn + 2.2) + 0.4 * hosp + 0.25 * (sector == "construction")
         + 0.5 * quality + 0.1 * (unemp - BASE_UNEMP) - 0.1 * (log_turn - 12.3))
    breach = (rng.random(n) < _sigmoid(z)).astype(np.int8)
    return pd.DataFrame({
        "application_id": [f"S{quarter}-{i:06d}" for i in range(n)],
        "applied_on": _dates(rng, quarter, n),
        "annual_turnover": np.exp(log_turn).round(0), "years_trading": years,
        "requested_limit": req_limit.round(0), "overdraft_utilisation": od_util.round(4),
        "late_payments_12m": late.astype(np.int64), "employees": employees.astype(np.int64),
        "cash_buffer_days": cash_days.astype(np.int64),
        "sector": sector, "region": region,
        "limit_breach_12m": breach,
    })


GENERATORS = {"loans": loans, "cards": cards, "sme": sme}


def generate(domain: str, quarter: str, n: int, seed: int) -> pd.DataFrame:
    """One quarter of one population, deterministic in (domain, quarter, n, seed)."""
    return GENERATORS[domain](quarter, n, seed)



# A month's extract of a quarter (registered as its own production window, so checks inside the
# quarter can use the month once it has closed, without looking ahead).
MONTH_EXTRACTS = {"2026-07": "2026Q3"}
_TIME_COLUMN = {"loans": "applied_on", "cards": "timestamp", "sme": "applied_on"}
_ID_COLUMN = {"loans": "application_id", "cards": "transaction_id", "sme": "application_id"}
_PROTECTED = {"loans": ["age"], "cards": ["customer_age"], "sme": []}


def month_rows(domain: str, frame: pd.DataFrame, month: str) -> pd.DataFrame:
    """The rows of ``frame`` dated in ``month`` (YYYY-MM)."""
    t = pd.to_datetime(frame[_TIME_COLUMN[domain]])
    return frame[t.dt.strftime("%Y-%m") == month].reset_index(drop=True)


def column_roles(domain: str) -> dict[str, list[str]]:
    """Column roles of a population's files (DESIGN §2): model inputs, label, protected, id, time."""
    sc = SCHEMA[domain]
    roles = {"input": [n for n, _ in sc["numeric"]] + list(sc["categorical"]), "target": [sc["label"]],
             "id": [_ID_COLUMN[domain]], "timestamp": [_TIME_COLUMN[domain]]}
    if _PROTECTED[domain]:
        roles["protected"] = list(_PROTECTED[domain])
    return roles
