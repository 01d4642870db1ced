"""The book of models, versions, artifacts and the year's story (declarative; see README.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .data import QUARTER_END, QUARTER_START, QUARTERS  # noqa: F401

QUARTER_FILES = {"loans": "data/loans_{q}.parquet", "cards": "data/cards_{q}.parquet", "sme": "data/sme_{q}.parquet"}
MONTH_FILES = {"loans": "data/loans_{m}.parquet", "cards": "data/cards_{m}.parquet", "sme": "data/sme_{m}.parquet"}
DEV_FILE = "data/{domain}_dev_{q0}_{q1}.parquet"  # a version's development data (its training quarters)
# What the bank knows of a period's outcomes on a given day (sample_data/outcomes.py): labels whose
# window has not closed by ``known`` are blank. One snapshot per outcome check: never a later one.
OUTCOME_FILE = "outcomes/{population}_{period}.known-{known}.parquet"
OUTCOME_LABEL = {"retail-pd": ("loans", "default_12m", "applied_on", 365),
                 "card-fraud": ("cards", "is_fraud", "timestamp", 60)}


@dataclass
class VersionSpec:
    model: str
    version: str
    train_quarters: tuple[str, str]
    trained_at: str
    deploy_at: str
    ft_lr: float | None = None  # warm-start learning rate; None: the model's default (how deep a retrain)

    @property
    def weights(self) -> str:
        return f"models/{self.model}/{self.version}.safetensors"

    @property
    def data_window(self) -> str:
        return f"{QUARTER_START[self.train_quarters[0]]}..{QUARTER_END[self.train_quarters[-1]]}"


@dataclass
class ModelSpec:
    id: str
    name: str
    owner: str
    tier: int
    use: str
    tags: tuple[str, ...]
    domain: str
    d_model: int
    d_mlp: int
    n_blocks: int
    threshold: float
    versions: list[VersionSpec] = field(default_factory=list)
    epochs: int = 5
    lr: float = 3e-3
    ft_epochs: int = 3
    ft_lr: float = 5e-4


def _versions(model: str, plan: list[tuple]) -> list[VersionSpec]:
    return [VersionSpec(model, p[0], p[1], f"{p[2]}T00:00:00Z", f"{p[3]}T00:00:00Z", *p[4:]) for p in plan]


MODELS = [
    ModelSpec("retail-pd", "Retail probability of default", "alice.chen", 1,
              "12-month probability of default for unsecured retail lending decisions (approve / refer)",
              ("sr11-7", "eu-ai-act-high-risk", "irb"), "loans", 32, 256, 3, 0.15,
              _versions("retail-pd", [
                  ("v1", ("2025Q2", "2025Q3"), "2025-09-20", "2025-10-01"),
                  ("v2", ("2025Q3", "2025Q4"), "2025-12-20", "2026-01-05", 2e-3),  # deep retrain
                  ("v3", ("2025Q4", "2026Q1"), "2026-03-20", "2026-04-01", 1.0e-3),
                  ("v4", ("2026Q1", "2026Q2"), "2026-06-20", "2026-07-01", 3e-4),  # light refresh
              ])),
    ModelSpec("card-fraud", "Card transaction fraud score", "bruno.keller", 1,
              "real-time fraud score on card authorisations (decline / step-up above threshold)",
              ("sr11-7", "psd2"), "cards", 32, 1024, 3, 0.2,
              _versions("card-fraud", [
                  ("v1", ("2025Q2", "2025Q3"), "2025-09-22", "2025-10-01"),
                  ("v2", ("2025Q3", "2025Q4"), "2026-01-06", "2026-01-12"),
                  ("v3", ("2025Q4", "2026Q1"), "2026-03-28", "2026-04-06"),
              ])),
    ModelSpec("sme-limit", "SME overdraft limit breach", "chloe.martin", 2,
              "probability that a small business breaches its overdraft limit within 12 months (limit setting)",
              ("sr11-7",), "sme", 32, 1024, 3, 0.12,
              _versions("sme-limit", [
                  ("v1", ("2025Q2", "2025Q3"), "2025-09-18", "2025-10-01"),
                  ("v2", ("2025Q4", "2026Q1"), "2026-03-22", "2026-04-01"),
                  ("v3", ("2026Q1", "2026Q2"), "2026-06-24", "2026-07-01"),
              ])),
    ModelSpec("collections-priority", "Collections call prioritisation", "dev.patel", 3,
              "orders the collections team's call list by estimated default risk (no automated decision)",
              ("internal",), "loans", 16, 64, 2, 0.15,
              _versions("collections-priority", [
                  ("v1", ("2025Q2", "2025Q3"), "2025-09-15", "2025-10-01"),
                  ("v2", ("2025Q4", "2026Q1"), "2026-03-25", "2026-04-01"),
              ]), epochs=4),
]


@dataclass
class ArtifactSpec:
    id: str
    model: str
    kind: str
    bound_version: str
    path: str
    hook: str | None
    registered_at: str
    hook_out: str | None = None
    replaces: str | None = None
    labels: bool = False
    # training settings
    arch: str = "standard"
    d: int = 64
    k: int | None = None
    l1: float = 1e-2
    steps: int = 1200
    apply_b_dec: bool = True
    jump_quantile: float = 0.25
    layer: int = 0
    probe_target: tuple[str, str, float] | None = None  # (column, op, value), e.g. ("age", ">=", 60)
    probe_description: str = ""
    labels_of: str | None = None  # feature_labels: the SAE whose labels.json this is


def _tc(layer: int) -> ArtifactSpec:
    return ArtifactSpec(f"sme-limit-tc-l{layer}-v1", "sme-limit", "transcoder", "v1",
                        f"artifacts/sme-limit/tc-v1/layer_{layer}.safetensors", f"blocks.{layer}.hook_resid_pre",
                        "2025-10-08T00:00:00Z", hook_out=f"blocks.{layer}.hook_mlp_out", layer=layer, d=64,
                        l1=1e-2)


ARTIFACTS = [
    ArtifactSpec("retail-pd-sae-l1-v1", "retail-pd", "sae", "v1", "artifacts/retail-pd/sae-l1-v1",
                 "blocks.1.hook_resid_pre", "2025-10-05T00:00:00Z", labels=True, arch="standard", d=64, l1=1e-2),
    ArtifactSpec("retail-pd-labels-v1", "retail-pd", "feature_labels", "v1",
                 "artifacts/retail-pd/sae-l1-v1/labels.json", "blocks.1.hook_resid_pre", "2025-10-05T00:00:00Z",
                 labels_of="retail-pd-sae-l1-v1"),
    ArtifactSpec("retail-pd-baseline-v1", "retail-pd", "attribution_baseline", "v1",
                 "artifacts/retail-pd/baseline-v1", None, "2025-10-05T00:00:00Z"),
    ArtifactSpec("retail-pd-probe-age-v1", "retail-pd", "probe", "v1", "artifacts/retail-pd/probe-age-v1",
                 "blocks.2.hook_resid_pre", "2025-10-20T00:00:00Z",
                 probe_target=("age", ">=", 60),
                 probe_description="applicant aged 60 or over (age is a protected characteristic: does the model encode it?)"),
    _tc(0), _tc(1), _tc(2),
    ArtifactSpec("retail-pd-sae-l1-v3", "retail-pd", "sae", "v3", "artifacts/retail-pd/sae-l1-v3",
                 "blocks.1.hook_resid_pre", "2026-04-10T00:00:00Z", replaces="retail-pd-sae-l1-v1", labels=True,
                 arch="topk", k=8, d=64, apply_b_dec=False),
    ArtifactSpec("card-fraud-sae-l2-v3", "card-fraud", "sae", "v3", "artifacts/card-fraud/sae-l2-v3",
                 "blocks.2.hook_resid_pre", "2026-04-10T00:00:00Z", labels=True, arch="jumprelu", d=64, l1=3e-2,
                 jump_quantile=0.4),
    ArtifactSpec("sme-limit-clt-v2", "sme-limit", "clt", "v2", "artifacts/sme-limit/clt-v2",
                 "blocks.{layer}.hook_resid_pre", "2026-04-08T00:00:00Z", hook_out="blocks.{layer}.hook_mlp_out",
                 d=32, l1=1e-2),
    ArtifactSpec("sme-limit-sae-wide-v2", "sme-limit", "sae", "v2", "artifacts/sme-limit/sae-wide-v2",
                 "blocks.1.hook_resid_pre", "2026-04-08T00:00:00Z", arch="standard", d=4096, l1=1e-2, steps=250),
]
ARTIFACT_BY_ID = {a.id: a for a in ARTIFACTS}


def artifact_entry(a: ArtifactSpec) -> dict:
    labels = None
    if a.labels:
        labels = f"{a.path}/labels.json"
    elif a.kind == "feature_labels":
        labels = a.path
    return {"id": a.id, "model": a.model, "kind": a.kind, "bound_version": a.bound_version, "path": a.path,
            "hook": a.hook, "hook_out": a.hook_out, "labels": labels, "replaces": a.replaces,
            "registered_at": a.registered_at}


def outcome_snapshots(events: list[dict]) -> list[tuple[str, str, str, str]]:
    """``(path, population, period, known_by)`` of every outcome file the story's checks read."""
    out = set()
    for e in events:
        if e["do"] in ("performance", "fairness"):
            population = OUTCOME_LABEL[e["model"]][0]
            period = e["data"].split("/")[-1].split(".known-")[0][len(population) + 1:]
            out.add((e["data"], population, period, e["at"][:10]))
    return sorted(out)


def last_closed_quarter(at: str) -> str:
    """The latest quarter whose data is complete at ``at`` (it ended before at's day)."""
    day = at[:10]
    return max(q for q in QUARTERS if QUARTER_END[q] < day)


def _t(day: str, hh: int = 0) -> str:
    return f"{day}T{hh:02d}:00:00Z"


def story_events() -> list[dict]:
    """The bank's year, 2025Q4 → 2026Q3, in time order (explained in README.md)."""
    ev: list[dict] = []
    add = ev.append
    data = {"retail-pd": "data/loans_{q}.parquet", "card-fraud": "data/cards_{q}.parquet",
            "sme-limit": "data/sme_{q}.parquet", "collections-priority": "data/loans_{q}.parquet"}

    def validate(at, art, version, data_file=None):
        """Validate on data the check could have had: by default the last quarter that ended before it."""
        add({"at": at, "do": "validate", "artifact": art, "version": version,
             "data": data_file or data[ARTIFACT_BY_ID[art].model].format(q=last_closed_quarter(at))})

    def overhead(at, art, version):
        add({"at": at, "do": "overhead", "artifact": art, "version": version,
             "data": data[ARTIFACT_BY_ID[art].model].format(q=last_closed_quarter(at))})

    def accept(at, art, version, rationale):
        """A validator (not the owner or a developer) accepts the latest warn fidelity check."""
        add({"at": at, "do": "accept", "artifact": art, "version": version, "rationale": rationale,
             "actor": "carol.validator"})

    def outcome_check(at, do, model, version, period, **kw):
        """An outcome check on what the bank knows of ``period`` at the check's time (label lag applied)."""
        population, target, timestamp, days = OUTCOME_LABEL[model]
        add({"at": at, "do": do, "model": model, "version": version,
             "data": OUTCOME_FILE.format(population=population, period=period, known=at[:10]),
             "target": target, "timestamp": timestamp, "maturity_days": days, **kw})

    def fairness(at, version, period):
        """MRM's quarterly fair-lending review of retail-pd's decisions (age band, and region as a proxy)."""
        outcome_check(at, "fairness", "retail-pd", version, period, protected=["age_band", "region"])

    july = {"retail-pd": MONTH_FILES["loans"], "card-fraud": MONTH_FILES["cards"],
            "sme-limit": MONTH_FILES["sme"]}

    # versions are registered a few days after training, deployed on their deploy date
    by_time = []
    for m in MODELS:
        prev = None
        for v in m.versions:
            by_time.append((v.deploy_at, m.id, v.version, prev))
            prev = v.version
    deploys = {}
    for at, mid, ver, prev in by_time:
        deploys.setdefault(at, []).append((mid, ver, prev))

    def deploy_all(at):
        for mid, ver, prev in deploys.pop(at):
            add({"at": at, "do": "register_version", "model": mid, "version": ver})
            if prev:
                add({"at": at, "do": "retire", "model": mid, "version": prev})
            add({"at": at, "do": "deploy", "model": mid, "version": ver})

    def register(at, *ids):
        for i in ids:
            add({"at": at, "do": "register_artifact", "artifact": i})

    # ---- 2025Q4: launch of the book; retail-pd and sme-limit get artifacts, card-fraud none yet
    deploy_all(_t("2025-10-01"))
    register(_t("2025-10-05"), "retail-pd-sae-l1-v1", "retail-pd-labels-v1", "retail-pd-baseline-v1")
    validate(_t("2025-10-06"), "retail-pd-sae-l1-v1", "v1")
    validate(_t("2025-10-06", 1), "retail-pd-baseline-v1", "v1")
    register(_t("2025-10-08"), "sme-limit-tc-l0-v1", "sme-limit-tc-l1-v1", "sme-limit-tc-l2-v1")
    for layer in range(3):
        validate(_t("2025-10-09", layer), f"sme-limit-tc-l{layer}-v1", "v1")
    overhead(_t("2025-10-10"), "sme-limit-tc-l1-v1", "v1")
    # the validator reviews the launch validations: the warnings are dense features, documented and accepted
    accept(_t("2025-10-12"), "retail-pd-sae-l1-v1", "v1",
           "Dense features reviewed at launch: they encode product and region and are documented; adequate.")
    for layer in range(3):
        accept(_t("2025-10-12", layer + 1), f"sme-limit-tc-l{layer}-v1", "v1",
               "Per-layer transcoder reviewed at launch: dense features documented; reconstruction adequate.")
    register(_t("2025-10-20"), "retail-pd-probe-age-v1")
    validate(_t("2025-10-21"), "retail-pd-probe-age-v1", "v1")
    add({"at": _t("2025-11-15"), "do": "finding", "model": "card-fraud", "severity": "medium",
         "title": "No interpretability artifacts for a tier-1 fraud model", "owner": "bruno.keller",
         "due": "2026-03-31"})
    # quarter-close sweeps run at 00:00 of the next quarter, once the quarter's data is complete
    add({"at": _t("2026-01-01"), "do": "due_checks"})
    fairness(_t("2026-01-02"), "v1", "2025Q4")
    # ---- 2026Q1: retail-pd v2 (deep retrain) and card-fraud v2; the v1 SAE is re-validated on v2, the baseline is not
    deploy_all(_t("2026-01-05"))
    validate(_t("2026-01-08"), "retail-pd-sae-l1-v1", "v2")
    deploy_all(_t("2026-01-12"))
    for layer in range(3):
        validate(_t("2026-01-14", layer), f"sme-limit-tc-l{layer}-v1", "v1")
    add({"at": _t("2026-02-16"), "do": "finding", "model": "retail-pd", "severity": "medium",
         "title": "Plan a retrained SAE for retail-pd after the v2 deep retrain", "owner": "alice.chen", "due": "2026-04-30"})
    add({"at": _t("2026-04-01"), "do": "due_checks"})
    fairness(_t("2026-04-02"), "v2", "2026Q1")
    # retail-pd v2's first quarter in production against its development data (the default reference)
    add({"at": _t("2026-04-01"), "do": "drift", "model": "retail-pd", "version": "v2",
         "current": "data/loans_2026Q1.parquet"})
    # ---- 2026Q2: retrains everywhere; the retail SAE is replaced, card-fraud gets its SAE,
    #      sme-limit gets a CLT and a (too) wide SAE, the v1 transcoders are re-validated on v2 once
    deploy_all(_t("2026-04-01"))
    deploy_all(_t("2026-04-06"))
    register(_t("2026-04-08"), "sme-limit-clt-v2", "sme-limit-sae-wide-v2")
    validate(_t("2026-04-08", 1), "sme-limit-clt-v2", "v2")
    validate(_t("2026-04-08", 2), "sme-limit-sae-wide-v2", "v2")
    validate(_t("2026-04-08", 3), "sme-limit-tc-l1-v1", "v2")
    overhead(_t("2026-04-09"), "sme-limit-sae-wide-v2", "v2")
    register(_t("2026-04-10"), "retail-pd-sae-l1-v3", "card-fraud-sae-l2-v3")
    validate(_t("2026-04-10", 1), "retail-pd-sae-l1-v3", "v3")
    add({"at": _t("2026-04-10", 2), "do": "alignment", "old": "retail-pd-sae-l1-v1", "new": "retail-pd-sae-l1-v3",
         "version": "v3"})
    validate(_t("2026-04-10", 4), "card-fraud-sae-l2-v3", "v3")
    overhead(_t("2026-04-10", 5), "card-fraud-sae-l2-v3", "v3")
    # a validator reviews the new fraud SAE's warning (dense features) and accepts it
    # back-test of retail-pd v3 on the oldest cohort: only applications up to mid-April 2025 have a
    # known 12-month outcome on 15 April 2026 (the rest is counted, not judged)
    outcome_check(_t("2026-04-15"), "performance", "retail-pd", "v3", "2025Q2",
                  reference=DEV_FILE.format(domain="loans", q0="2025Q4", q1="2026Q1"))
    accept(_t("2026-04-14"), "card-fraud-sae-l2-v3", "v3",
           "Dense features reviewed: they track transaction amount bands and are documented; adequate for reason codes.")
    add({"at": _t("2026-05-04"), "do": "finding", "model": "sme-limit", "severity": "low",
         "title": "Wide SAE exceeds the latency budget; use offline only", "owner": "chloe.martin",
         "due": "2026-09-30"})
    add({"at": _t("2026-07-01"), "do": "due_checks"})
    fairness(_t("2026-07-02", 3), "v3", "2026Q2")
    # ---- 2026Q3: retail-pd v4 and sme-limit v3; crypto-exchange traffic arrives in card data
    deploy_all(_t("2026-07-01"))
    # overhead is re-measured after every retrain (DESIGN §3); MRM asks whether v4 still encodes age
    overhead(_t("2026-07-02"), "sme-limit-sae-wide-v2", "v3")
    # the sme-limit retrain left everything bound to v1/v2 stale: the layer-1 transcoder is adapted to
    # v3 (warm start from its own weights, a small step budget) on the last closed quarter and checked
    # on held-out rows; the validator reviews the child's warning (dense features, as its parent's) the
    # same day, so the model's coverage recovers from 8 July
    add({"at": _t("2026-07-08"), "do": "adapt", "artifact": "sme-limit-tc-l1-v1", "version": "v3",
         "data": "data/sme_2026Q2.parquet", "steps": 150, "seed": 20260708})
    accept(_t("2026-07-08", 2), "sme-limit-tc-l1-v1-adapted-v3", "v3",
           "Adapted transcoder reviewed: EV on held-out v3 rows restored, dense features the same as its "
           "parent's (accepted at launch). Accepted until the next retrain.")
    validate(_t("2026-07-02", 1), "retail-pd-probe-age-v1", "v4")
    validate(_t("2026-07-03"), "retail-pd-sae-l1-v3", "v4")
    accept(_t("2026-07-06"), "retail-pd-sae-l1-v3", "v4",
           "v4 is a light refresh; EV 0.97 on v4 with the dense features already reviewed on v3. Accepted until the "
           "next retrain.")
    # outcomes analysis of the new version on the latest fully matured cohort (2025Q2: 12 months closed)
    outcome_check(_t("2026-07-08"), "performance", "retail-pd", "v4", "2025Q2",
                  reference=DEV_FILE.format(domain="loans", q0="2026Q1", q1="2026Q2"))
    # July's extract is complete on 1 August: the drift checks against each version's development
    # data come first; the fidelity check that follows on the drifted window is what reveals
    # FM-DRIFT-BRITTLE (explanations confident and wrong under shift)
    add({"at": _t("2026-08-03"), "do": "drift", "model": "card-fraud", "version": "v3",
         "current": july["card-fraud"].format(m="2026-07")})
    validate(_t("2026-08-03", 1), "card-fraud-sae-l2-v3", "v3", july["card-fraud"].format(m="2026-07"))
    add({"at": _t("2026-08-03", 2), "do": "activation_drift", "artifact": "card-fraud-sae-l2-v3", "version": "v3",
         "reference": "data/cards_2026Q2.parquet", "current": july["card-fraud"].format(m="2026-07")})
    # the nightly job tries to adapt the broken fraud SAE to July's drifted traffic with a one-step
    # budget: it does not reach the fidelity floor on held-out rows, is recorded as a failed
    # adaptation, registers nothing, and the SAE stays broken (the debt stays visible)
    add({"at": _t("2026-08-03", 3), "do": "adapt", "artifact": "card-fraud-sae-l2-v3", "version": "v3",
         "data": july["card-fraud"].format(m="2026-07"), "steps": 1, "seed": 20260806})
    add({"at": _t("2026-08-04"), "do": "drift", "model": "retail-pd", "version": "v4",
         "current": july["retail-pd"].format(m="2026-07")})
    add({"at": _t("2026-08-04", 1), "do": "drift", "model": "sme-limit", "version": "v3",
         "current": july["sme-limit"].format(m="2026-07")})
    add({"at": _t("2026-08-05"), "do": "finding", "model": "card-fraud", "severity": "high",
         "title": "Fraud-score explanations unreliable on crypto-exchange traffic", "owner": "bruno.keller",
         "due": "2026-10-31"})
    add({"at": _t("2026-08-03"), "do": "finding", "model": "retail-pd", "severity": "medium",
         "title": "Attribution baseline not re-validated since v1", "owner": "alice.chen", "due": "2026-08-31"})
    # July's decisions under the monthly fair-lending review: the North region's approval rate falls
    fairness(_t("2026-08-04", 2), "v4", "2026-07")
    # fraud labels mature 60 days after the transaction: the 2026Q2 outcomes are complete by 30 August
    outcome_check(_t("2026-08-31"), "performance", "card-fraud", "v3", "2026Q2",
                  reference=DEV_FILE.format(domain="cards", q0="2025Q4", q1="2026Q1"))
    # a misconfigured nightly job points the sme-limit validation at the retail loans extract:
    # the check cannot run and is recorded as an error (FM-ERROR) -- absence of evidence is evidence
    add({"at": _t("2026-08-12"), "do": "validate", "artifact": "sme-limit-sae-wide-v2", "version": "v3",
         "data": "data/loans_2026Q2.parquet"})
    add({"at": _t("2026-10-01"), "do": "due_checks"})
    fairness(_t("2026-10-01", 1), "v4", "2026Q3")
    # mid-June the model-risk committee adopts a monitoring plan per model (DESIGN §10): from then
    # on a required check that does not run on time opens FM-MISSED, and the pack shows adherence
    mrm = {"email": ["mrm@bank.example"], "webhook": ["mrm-hook"]}
    for mid, plan in (
            ("retail-pd", {"checks": {"fidelity": {"cadence": ["after_retrain", {"every": "90d"}]},
                                      "data_drift": {"cadence": "monthly"},
                                      "overhead": {"cadence": "after_retrain"}}, "alert": mrm, "grace": "3d"}),
            ("card-fraud", {"checks": {"fidelity": {"cadence": ["after_retrain", {"every": "90d"}]},
                                       "data_drift": {"cadence": "monthly"},
                                       "overhead": {"cadence": "after_retrain"}}, "alert": mrm, "grace": "3d"}),
            ("sme-limit", {"checks": {"fidelity": {"cadence": ["after_retrain", {"every": "90d"}]},
                                      "data_drift": {"cadence": "quarterly"},
                                      "overhead": {"cadence": "after_retrain"}}, "alert": mrm, "grace": "3d"}),
            ("collections-priority", {"checks": {"data_drift": {"cadence": "quarterly", "required": False}},
                                      "alert": {"email": ["collections-owner@bank.example"]}})):
        add({"at": _t("2026-06-15"), "do": "plan", "model": mid, "plan": plan})
    if deploys:  # pragma: no cover - every deploy date must appear above
        raise AssertionError(f"deploy dates not in the story: {sorted(deploys)}")
    ev.sort(key=lambda e: e["at"])  # stable: events at the same time keep their written order
    return ev
