"""Coverage, staleness, interpretability debt and failure-mode detection (DESIGN §4–§6).

Pure functions over pandas frames: no database, no torch. The store's loader builds an
:class:`AnalysisInput`; :func:`analyse_quarter` and :func:`detect_failure_modes` do the rest.
"""

from .calendar import Quarter, parse_quarter, quarter_of
from .failure_modes import CATALOG, Detection, detect_failure_modes
from .frames import AnalysisInput
from .policy import AnalysisPolicy, normalise_policy
from .quarter import QuarterAnalysis, analyse_quarter

__all__ = ["AnalysisInput", "AnalysisPolicy", "CATALOG", "Detection", "Quarter", "QuarterAnalysis",
           "analyse_quarter", "detect_failure_modes", "normalise_policy", "parse_quarter", "quarter_of"]
