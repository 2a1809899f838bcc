"""The eval loop: quality signals in (feedback, offline scores, scorers, judge, shadow), failure modes,
regeneration, weakness report and recalibration. See ``docs/eval.md``."""
