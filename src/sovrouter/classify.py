"""Classification signals. The baseline reads nothing; the learned router brings its own classifier."""

from __future__ import annotations

from sovrouter.contracts import Detection, NormalizedRequest, Signals


class NullClassifier:
    def classify(self, request: NormalizedRequest, detection: Detection) -> Signals:
        return Signals(sensitive=detection.has_personal_data)


class NullDetector:
    """Detects nothing. Only for tests of other parts; the sovereignty detector replaces it in every config."""

    def detect(self, request: NormalizedRequest) -> Detection:
        return Detection()
