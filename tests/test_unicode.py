"""Lone surrogates: refused from clients, repaired from upstreams and recorded workloads."""

from __future__ import annotations

import pytest

from sovrouter.errors import InvalidRequestError
from sovrouter.unicode import reject_lone_surrogates, repair_strings, valid_text


def test_valid_text_replaces_only_lone_surrogates() -> None:
    assert valid_text("a\ud83db") == "a\ufffdb"
    assert valid_text("x\udc00") == "x\ufffd"
    ok = "emoji 😀 and accents é"
    assert valid_text(ok) is ok


def test_repair_strings_walks_keys_values_and_lists() -> None:
    assert repair_strings({"k\ud800": ["v\udc00", 3, {"n": None}]}) == {"k\ufffd": ["v\ufffd", 3, {"n": None}]}


def test_reject_walks_deep_values_without_recursion() -> None:
    deep: object = "fine"
    for _ in range(5000):  # deeper than the interpreter's recursion limit
        deep = [deep]
    reject_lone_surrogates(deep)
    bad: object = "\ud800"
    for _ in range(5000):
        bad = {"x": bad}
    with pytest.raises(InvalidRequestError):
        reject_lone_surrogates(bad)
