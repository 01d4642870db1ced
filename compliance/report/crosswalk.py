"""The regulatory crosswalk: one source for the pack's appendix and docs/regulatory-crosswalk.md.

Each row maps a supervisory expectation to the pack sections that evidence it. A row that needs
evidence of a kind the pack does not hold (e.g. outcomes analysis without outcome or performance
checks) is printed as **not covered**, never mapped to something else; ``NOT_COVERED`` lists what
the pack does not cover at all. ``python -m compliance.report.crosswalk --doc`` prints the docs
page (a test keeps docs/regulatory-crosswalk.md equal to it).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Iterable

US = "OCC 2026-13 / SR 26-2"
UK = "PRA SS1/23"
EU = "EU AI Act"

#: Check kinds that evidence the model's own outcomes / accuracy / fairness (none are built in).
OUTCOME_KINDS = frozenset({"outcome", "outcomes", "performance", "backtest"})
FAIRNESS_KINDS = frozenset({"fairness"})


@dataclass(frozen=True)
class Mapping:
    framework: str
    reference: str
    requirement: str
    sections: str
    needs: frozenset[str] = frozenset()  # check kinds of which one must be in the pack
    missing: str = ""  # what the row says when none is

    def covered(self, kinds: Iterable[str]) -> bool:
        return not self.needs or bool(self.needs & set(kinds))


_NO_OUTCOMES = ("Not covered: this pack holds no outcome or performance check of the model; "
                "fidelity and drift are not outcomes analysis.")

MAPPINGS: tuple[Mapping, ...] = (
    Mapping(US, "Model development, implementation and use", "Sound development and testing; "
            "limitations documented", "Inventory; Fidelity results; Validator's conclusion "
            "(limitations); Appendix A (methodology)"),
    Mapping(US, "Validation — ongoing monitoring", "Confirm the model performs as intended as "
            "products, exposures and data change", "Coverage; Debt; Drift results; Compute budget"),
    Mapping(US, "Validation — outcomes analysis", "Compare model outputs with actual outcomes",
            "Outcomes chapter", OUTCOME_KINDS, _NO_OUTCOMES),
    Mapping(US, "Governance — model inventory", "Complete inventory of models in use",
            "Inventory; Change log"),
    Mapping(US, "Governance — issues and validation findings", "Track findings to remediation",
            "Failure-mode register; Findings; Validator's conditions"),
    Mapping(UK, "Principle 1", "Model identification, inventory, risk tiering",
            "Inventory; Coverage per tier"),
    Mapping(UK, "Principle 2", "Governance: accountable owners, sign-off",
            "Inventory (owner); Attestation"),
    Mapping(UK, "Principle 3", "Development, implementation and use: documented, tested, "
            "monitored", "Change log; Fidelity results; Appendix A"),
    Mapping(UK, "Principle 4", "Independent validation; ongoing performance monitoring",
            "Fidelity; Drift; Debt; Validator's conclusion and rating; Attestation (four eyes)"),
    Mapping(UK, "Principle 4 — performance", "Monitoring of the model's own performance "
            "(accuracy, outcomes)", "Outcomes chapter", OUTCOME_KINDS, _NO_OUTCOMES),
    Mapping(UK, "Principle 5", "Risk mitigants: adjustments, restrictions on use, escalation",
            "Failure-mode register; Findings; Validator's conditions and compensating controls"),
    Mapping(EU, "Art. 9", "Risk-management system; testing against prior-defined metrics and "
            "thresholds", "Appendix B (policy thresholds); Reasons of warn, fail and error "
            "checks; Failure-mode register"),
    Mapping(EU, "Art. 10", "Data and data governance (relevance, representativeness, bias)",
            "Drift results (input drift, label shift) of registered datasets only"),
    Mapping(EU, "Art. 10(2)(f) — bias", "Examination of possible biases",
            "Fairness chapter", FAIRNESS_KINDS,
            "Not covered: no fairness check of the model's decisions is in this pack (a probe "
            "of a protected attribute shows what the model encodes, not how it decides)."),
    Mapping(EU, "Art. 11", "Technical documentation (content of Annex IV)",
            "Part of it: see the Annex IV rows"),
    Mapping(EU, "Art. 12", "Automatic recording of events over the lifetime (supports, does "
            "not replace, the system's own event logs)",
            "Evidence index; ledger excerpt (export); cover hashes"),
    Mapping(EU, "Art. 13", "Transparency and information to deployers",
            "Coverage; Fidelity results"),
    Mapping(EU, "Art. 14", "Human oversight: overseers can interpret the output",
            "Coverage and staleness (whether a valid explanation exists for the version in use)"),
    Mapping(EU, "Art. 15 — accuracy", "Declared accuracy levels and metrics",
            "Outcomes chapter", OUTCOME_KINDS,
            "Not covered: the model's accuracy is not measured by this pack; drift and fidelity "
            "are not accuracy."),
    Mapping(EU, "Art. 15 — robustness", "Resilience to errors and to changes in the data",
            "Drift results; failure modes FM-DRIFT-BRITTLE, FM-DECAY"),
    Mapping(EU, "Art. 17", "Quality management system",
            "Record-keeping and sign-off only: versioned policy, ledger, attestation"),
    Mapping(EU, "Art. 18", "Documentation keeping", "Regulator export (zip, manifest); "
            "retention is the bank's archive policy"),
    Mapping(EU, "Art. 19", "Automatically generated logs kept", "Ledger excerpt of the export "
            "(evidence writes, not the model's operational logs)"),
    Mapping(EU, "Art. 72", "Post-market monitoring", "Trend; Coverage timeline; Failure-mode "
            "register; Findings"),
    Mapping(EU, "Annex IV(2)", "Design, development and validation methods and metrics",
            "Appendix A (methodology), B (policy); Fidelity results"),
    Mapping(EU, "Annex IV(3)", "Monitoring, functioning and control; limitations",
            "Coverage; Debt; Drift results; Validator's limitations"),
    Mapping(EU, "Annex IV(6)", "Relevant changes through the lifecycle", "Change log"),
    Mapping(EU, "Annex IV(9)", "Post-market monitoring system (Art. 72)",
            "Trend; Failure-mode register; Findings"),
)

#: What the pack does not cover (printed in every pack; an entry drops out only when the pack
#: holds checks of a kind that covers it).
NOT_COVERED: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("Outcomes analysis and accuracy of the model", "The pack judges the interpretability "
     "artifacts that explain the model (their fidelity, freshness, drift and cost), not whether "
     "the model's own decisions are right: no comparison of predictions with outcomes, "
     "back-testing or accuracy figure is in it.", OUTCOME_KINDS),
    ("Fairness of the model's decisions", "No disparate-impact or other fairness measure of "
     "the model's decisions is in the pack. A probe of a protected attribute shows whether the "
     "model's internals encode it, which is a warning sign, not a fairness test.", FAIRNESS_KINDS),
    ("Conceptual soundness of the model", "The choice of model, features and training data is "
     "judged by the validator; the pack only records the evidence behind the explanations.",
     frozenset()),
    ("Operational logs, cybersecurity and human-oversight procedures", "The ledger records "
     "writes of evidence, not the model's decisions; security of the serving system and the "
     "oversight procedures are outside the pack.", frozenset()),
    ("Conformity assessment and legal compliance", "The crosswalk shows where evidence may "
     "support a requirement; it is not a legal opinion or a conformity assessment.", frozenset()),
)

PREAMBLE = """Guidance in force that the pack's evidence maps to: in the US the interagency model
risk management guidance of April 2026 (OCC Bulletin 2026-13 / Federal Reserve SR 26-2, which
rescinded SR 11-7 / OCC Bulletin 2011-12 on 17 April 2026); in the UK PRA SS1/23 (Model risk
management principles for banks); in the EU Regulation (EU) 2024/1689, the AI Act (Art. 9–15,
17–19, 72 and Annex IV). US references are given by topic; the texts are paraphrased — read the
originals. A requirement that needs evidence the pack does not hold is stated as not covered; the
crosswalk never maps it to something else."""


def crosswalk(kinds: Iterable[str] = ()) -> list[tuple[str, str, str, str, bool]]:
    """(framework, reference, requirement, where in the pack, covered) for a pack whose checks
    are of ``kinds``."""
    kinds = set(kinds)
    return [(m.framework, m.reference, m.requirement,
             m.sections if m.covered(kinds) else m.missing, m.covered(kinds)) for m in MAPPINGS]


def not_covered(kinds: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(title, text) of what a pack whose checks are of ``kinds`` does not cover."""
    kinds = set(kinds)
    return [(t, x) for t, x, k in NOT_COVERED if not (k and k & kinds)]


def _cell(s: str) -> str:
    return s.replace("|", "\\|")


def crosswalk_doc() -> str:
    """docs/regulatory-crosswalk.md."""
    lines = ["# Regulatory crosswalk", "",
             "Generated by `python -m compliance.report.crosswalk --doc` from "
             "`compliance/report/crosswalk.py`, the source the pack's appendix is printed from "
             "(also `tables/appendix_crosswalk.csv` in the export); do not edit by hand.", "",
             PREAMBLE.replace("\n", " "), "",
             "## Crosswalk (a pack without outcome, performance or fairness checks)", "",
             "| framework | reference | requirement | where in the pack |", "|---|---|---|---|"]
    for fw, ref, req, where, _ in crosswalk():
        lines.append(f"| {_cell(fw)} | {_cell(ref)} | {_cell(req)} | {_cell(where)} |")
    lines += ["", "Rows that need other evidence, and what they print once the pack holds it:", ""]
    for m in MAPPINGS:
        if m.needs:
            lines.append(f"- {m.framework} {m.reference}: with a check of kind "
                         f"{', '.join(sorted(m.needs))} → {m.sections}.")
    lines += ["", "## What this pack does not cover", ""]
    for title, text, kinds in NOT_COVERED:
        extra = f" (covered once the pack holds a {' / '.join(sorted(kinds))} check)" if kinds else ""
        lines.append(f"- **{title}**{extra}. {text}")
    return "\n".join(lines) + "\n"


def _main(argv: list[str]) -> int:
    if argv == ["--doc"]:
        sys.stdout.write(crosswalk_doc())
        return 0
    sys.stderr.write("usage: python -m compliance.report.crosswalk --doc\n")
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main(sys.argv[1:]))
