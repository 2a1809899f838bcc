"""Request headers the gateway reads besides the API key."""

from __future__ import annotations

from sovrouter.contracts import DATA_CLASS_ORDER, DataClass
from sovrouter.errors import InvalidRequestError


def data_class_header(value: str | None) -> DataClass:
    """The declared data class of ``X-Data-Class`` (``public`` when absent); anything else is a 400."""
    if value is None:
        return "public"
    v = value.strip().lower()
    if v not in DATA_CLASS_ORDER:
        raise InvalidRequestError("invalid X-Data-Class header: expected one of " + ", ".join(DATA_CLASS_ORDER),
                                  param="X-Data-Class")
    return v
