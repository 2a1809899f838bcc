"""Mechanisms added for held-out phrasings: uncued identifiers next to a name, name-only lines, weak cues
(prepositions, contact verbs, courtesy titles) with NER agreement, German compound cues, birth cue after the
date; and the stress-set generator (``sovrouter.testing_pii``)."""

from __future__ import annotations

import datetime as dt

import pytest

from sovrouter.detect import formats as f
from sovrouter.detect.detector import PiiDetector
from sovrouter.detect.recognizers import CueIndex, decide_identifiers

TASK = "A baker makes 12 loaves an hour for 7 hours. How many loaves does the baker make?"


def _ids(text: str) -> set[str]:
    return {t for t, _, _ in decide_identifiers(text, CueIndex().find(text), context=True)}


def test_german_compound_cue_selects_the_type() -> None:
    assert _ids("Rückrufnummer 0176 23456789") == {"PHONE"}
    assert _ids("Telefon-Nr. 030 1234567") == {"PHONE"}


def test_uncued_identifiers_are_only_context_candidates() -> None:
    assert _ids("078-05-1120") == {"US_SSN~id"}
    assert _ids("130 692 544") >= {"CA_SIN~id"}
    assert _ids("Ticket 078-05-1120 reopened") == set()  # an innocent cue still vetoes
    assert _ids("12.03.1961") == {"DATE_OF_BIRTH~ctx"}
    assert _ids("am 12.03.1961 geboren") == {"DATE_OF_BIRTH~weak"}


def test_adult_birth_date_rejects_recent_dates() -> None:
    this_year = dt.date.today().year
    assert f.adult_birth_date("1961-03-12")
    assert not f.adult_birth_date(f"{this_year - 1}-03-01")
    assert not f.adult_birth_date("31.02.1970")


@pytest.fixture(scope="module")
def detector() -> PiiDetector:
    return PiiDetector(timeout_ms=60_000)


POSITIVES: list[tuple[str, set[str]]] = [
    (f"Gwendolyn Okafor 078-05-1120\n\n{TASK}", {"PERSON", "US_SSN"}),
    (f"{TASK}\n\nHarriet Lindqvist", {"PERSON"}),
    (f"Dr. Matthias Brandtner\n{TASK}", {"PERSON"}),
    (f"For Rosalind Whitcombe: please check this.\n\n{TASK}", {"PERSON"}),
    (f"Bitte zurückrufen, Rückrufnummer 0176 23456789.\n{TASK}", {"PHONE"}),
    (f"Die Antragstellerin wohnt in Lindenstraße 4, 50667 Köln und ist am 12.03.1961 geboren.\n{TASK}",
     {"ADDRESS", "DATE_OF_BIRTH"}),
    (f"Ottilie Brenner, otti.brenner@posteo.de, 017623456789\n{TASK}", {"PERSON", "EMAIL", "PHONE"}),
]

NEGATIVES: list[str] = [
    f"D. Larry Joe\n{TASK}",  # an answer option, not a name line
    "J. Liberal Democrats abandoned anti-war protests in a show of support for President Johnson.",
    "Mr. John Kirk borrowed $3,000 to pay his bills. He was charged an interest rate of 10% for a 180 day period.",
    f"Incident 078-05-1120 resolved on 12.03.2019.\n{TASK}",
    f"The workshop moved to 14 March 2019.\n{TASK}",
    "—Patrick Henry, March 23, 1775",
]


@pytest.mark.slow
@pytest.mark.parametrize(("text", "types"), POSITIVES)
def test_generalised_positives(detector: PiiDetector, text: str, types: set[str]) -> None:
    assert types <= set(detector.detect_text(text).pii_types)


@pytest.mark.slow
@pytest.mark.parametrize("text", NEGATIVES)
def test_generalised_negatives(detector: PiiDetector, text: str) -> None:
    assert detector.detect_text(text).pii_types == []


def test_stress_generator_is_reproducible_and_labelled() -> None:
    pytest.importorskip("faker")
    from sovrouter.testing_pii import NEGATIVE_TEMPLATES, POSITIVE_TEMPLATES, generate

    a1 = generate([TASK], 60, seed=3, split="A")
    a2 = generate([TASK], 60, seed=3, split="A")
    assert [x.text for x in a1] == [x.text for x in a2]
    assert {x.kind for x in a1} == {"positive", "hard_negative", "plain"}
    for x in a1:
        assert bool(x.types) == (x.kind == "positive")
        assert TASK.split(".")[0] in x.text
        if x.kind != "plain":
            assert x.line in x.text
    for t in ("A", "B"):
        by_lang = {lang for lang, _ in POSITIVE_TEMPLATES[t]}
        assert by_lang == {"en", "de", "fr"}
    assert not {tpl for _, tpl in POSITIVE_TEMPLATES["A"]} & {tpl for _, tpl in POSITIVE_TEMPLATES["B"]}
    assert not {tpl for _, tpl in NEGATIVE_TEMPLATES["A"]} & {tpl for _, tpl in NEGATIVE_TEMPLATES["B"]}
