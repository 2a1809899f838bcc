"""Personal values never reach logs (captured at DEBUG, every logger), records or error bodies."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sovrouter.build import assemble
from sovrouter.catalog import Catalog, Tenants
from sovrouter.clock import WallClock
from sovrouter.config import Settings
from sovrouter.contracts import Candidate
from sovrouter.detect.detector import FailClosedDetector
from sovrouter.intake import normalize_chat
from sovrouter.store.records import SQLiteRecordStore
from sovrouter.testing import FailingAdapter, FakeAdapter

VALUES = ["Jacques Arnaud", "FR66 0070 0967 4842 6908 7807 427", "0495743919", "jacques.arnaud@wanadoo.fr",
          "577-21-8738", "4532015112830366", "X4471923", "14/02/1979", "Liebeltgasse 3555", "130 692 544"]
TEXTS = [
    "Customer: Jacques Arnaud, IBAN FR66 0070 0967 4842 6908 7807 427, phone 0495743919.\n\nWhat is 2+2?",
    "Mail jacques.arnaud@wanadoo.fr about SSN 577-21-8738 and card 4532015112830366.\n\nSummarise WW2.",
    "Passport X4471923, DOB 14/02/1979, Anschrift: Liebeltgasse 3555, 12369 Hünfeld. SIN 130 692 544.",
]


@pytest.mark.slow
async def test_values_never_logged_or_recorded(catalog: Catalog, tenants: Tenants, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # root: every library's logger, presidio and spaCy included
    adapters: dict[Candidate, object] = {}
    for s, d in catalog.pairs():
        c = Candidate(slot=s.id, deployment=d.id)
        adapters[c] = FailingAdapter(c) if s.id == "local-small" else FakeAdapter(c, text="fine")
    store = SQLiteRecordStore(tmp_path / "records.sqlite")
    cfg = Settings(catalog=Path("x"), tenants=Path("y"), policy="cedar", detector="pii")
    pipe = assemble(cfg, catalog, tenants, adapters, WallClock(), store)  # type: ignore[arg-type]
    assert isinstance(pipe.detector, FailClosedDetector)
    bodies = []
    for i, text in enumerate(TEXTS):
        for tenant in ("clinic-ca", "eurobank", "stranger", "heritage-archive"):
            out = await pipe.handle(normalize_chat({"messages": [{"role": "user", "content": text}]},
                                                   tenant=tenant, request_id=f"{tenant}-{i}"))
            assert out.record.detected_pii_types, "personal data expected in every test text"
            if out.error is not None:
                bodies.append(str(out.error.to_openai()))
    assert bodies, "some requests must have been refused (stranger)"
    exported = tmp_path / "records.jsonl"
    store.export_jsonl(exported)
    dumped = exported.read_text(encoding="utf-8")
    haystacks = {"logs": caplog.text, "records": dumped, "errors": "\n".join(bodies)}
    for where, text in haystacks.items():
        for value in VALUES:
            assert value not in text, f"a personal value reached the {where}"
            assert value.replace(" ", "") not in text.replace(" ", ""), f"a personal value reached the {where}"
    store.close()
