"""Reliability as wrappers: each takes a ModelAdapter and is one (same interface as what it wraps)."""

from sovrouter.reliability.fallback import FallbackAdapter
from sovrouter.reliability.guard import PolicyGuard

__all__ = ["FallbackAdapter", "PolicyGuard"]
