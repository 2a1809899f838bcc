"""Rules of 2026-11-28 for names and phone numbers the detector missed on the stress set's development split:
a courtesy or academic title before a name (any case), a title between a cue and its name, a middle initial, a cue
word as a surname when NER reads it so, and a call verb after a phone number (German clause-final verbs). Each
with near misses that must stay clean (docs/sovereignty.md, "Generalisation rules")."""

from __future__ import annotations

import pytest

from sovrouter.detect.detector import PiiDetector
from sovrouter.detect.recognizers import CueIndex, decide_identifiers
from sovrouter.detect.titles import title_gap, titled_names

TASK = "A baker makes 12 loaves an hour for 7 hours. How many loaves does the baker make?"


def _ids(text: str) -> set[str]:
    return {t for t, _, _ in decide_identifiers(text, CueIndex().find(text), context=True)}


def _names(text: str) -> list[tuple[str, int]]:
    return [(text[s:e], n) for s, e, n in titled_names(text)]


# ------------------------------------------------------------------------------------------------ titles (no model)
@pytest.mark.parametrize(("text", "names"), [
    ("bitte dr. ines albrecht unter 030 1234567", [("ines albrecht", 2)]),  # lower case: up to a function word
    ("Kundin: Dipl.-Ing. Dana Gröttner B.Sc.", [("Dana Gröttner", 2)]),
    ("Prof. Dr. med. Hans von Weizsäcker-Maier", [("Hans von Weizsäcker-Maier", 2)]),
    ("Merci à Mme Anne de la Roche", [("Anne de la Roche", 2)]),
    ("M. Dupont a appelé", [("Dupont", 1)]),
    ("mag. eva huber, tel. 0664 1234567", [("eva huber", 2)]),
    ("bitte dr. weber und partner anrufen", [("weber", 1)]),  # the name ends at "und", not after "partner"
])
def test_titled_names(text: str, names: list[tuple[str, int]]) -> None:
    assert _names(text) == names


@pytest.mark.parametrize("text", [
    "M. 5 tasks are left",  # "M." before a number
    "der herr der ringe",  # herr / frau in lower case are ordinary words
    "die frau von nebenan",
    "dr. who is a series",  # a function word is no name
    "Dr. Please answer the question",
    "The testing. Ing is a suffix",  # "ing." inside a word is no title
    "in ms word or ms excel",  # a lower-case abbreviation counts only with its full stop
])
def test_no_titled_name(text: str) -> None:
    assert titled_names(text) == []


def test_title_gap_takes_titles_in_either_case_only() -> None:
    assert title_gap(": dr. ")
    assert title_gap(" Dipl.-Ing. ")
    assert title_gap(" Prof. Dr. ")
    assert not title_gap(": ")  # a title must be there
    assert not title_gap(" and the ")


# ------------------------------------------------------------------------------ call verb after a phone number
def test_call_verb_after_the_number_makes_it_a_phone_number() -> None:
    assert _ids("bitte unter 03494 22617 zurückrufen") == {"PHONE"}
    assert _ids("unter (09545) 34259 anrufen") == {"PHONE"}
    assert _ids("unter 0171 2345678 telefonisch erreichbar") == {"PHONE"}
    assert _ids("please use 0171 2345678 to call me back") == {"PHONE"}
    assert _ids("au 06 12 34 56 78 pour me rappeler") == {"PHONE"}


def test_call_verb_after_the_number_near_misses() -> None:
    assert _ids("Bestellnummer 0605787210 anrufen") == set()  # an innocent cue before it still vetoes
    assert _ids("Ticket 123-45-6789 zurückrufen") == set()
    assert "PHONE" not in _ids("Das Ziel von 1000000 Euro ist erreichbar")  # a noun between: no call
    assert "PHONE" not in _ids("Die Stadt mit 1234567 Einwohnern ist gut erreichbar")
    assert "PHONE" not in _ids("am 12.03.2019 anrufen")  # a date is no phone number


def test_call_back_phrases_in_other_cases_and_whole_words_only() -> None:
    """German writes the call-back noun capitalised ("Rückruf erbeten"); a word that merely starts like a call
    verb ("callbacks") is none; a number ``phonenumbers`` finds impossible needs a phone cue before it, as
    elsewhere (found in review)."""
    assert _ids("0171 2345678, Rückruf erbeten") == {"PHONE"}
    assert _ids("UNTER 0171 2345678 ZURÜCKRUFEN") == {"PHONE"}
    assert "PHONE" not in _ids("The queue handled 1234567 callbacks yesterday")
    assert "PHONE" not in _ids("unter 000 000 0000 anrufen")


# ------------------------------------------------------------------------------------------ through the detector
@pytest.fixture(scope="module")
def detector() -> PiiDetector:
    return PiiDetector(timeout_ms=60_000)


POSITIVES: list[tuple[str, set[str]]] = [
    # a call verb at the end of the clause, the name in lower case
    (f"bitte ottilie brenner unter 0176 23456789 zurückrufen\n\n{TASK}", {"PHONE"}),
    (f"{TASK}\nbitte dr. ines albrecht unter 08062 953020 zurückrufen", {"PHONE", "PERSON"}),
    # a lower-case titled name right after a person cue, or next to an uncued personal identifier
    (f"patientin: dr. ines albrecht\n{TASK}", {"PERSON"}),
    (f"prof. ines albrecht 078-05-1120\n{TASK}", {"PERSON", "US_SSN"}),
    # a title between a weak or person cue and the name (spaCy never saw these before)
    (f"Für Prof. Dr. Ines Albrecht: bitte die folgende Aufgabe prüfen.\n{TASK}", {"PERSON"}),
    (f"For Dr. Rosalind Whitcombe: please check this.\n\n{TASK}", {"PERSON"}),
    (f"Ansprechpartnerin: Dipl.-Ing. Dana Gröttner\n{TASK}", {"PERSON"}),
    # a middle initial inside the name
    (f"Für Hans-J. Oberländer: bitte die folgende Aufgabe lösen.\n{TASK}", {"PERSON"}),
    (f"Gwendolyn R. Okafor 078-05-1120\n{TASK}", {"PERSON", "US_SSN"}),
    # a person cue word that NER reads as the surname, next to an uncued SSN
    (f"Michaela Holder 219-09-9999\n\n{TASK}", {"PERSON", "US_SSN"}),
]

NEGATIVES: list[str] = [
    f"Dr. Pepper\n{TASK}",
    f"Prof. Layton game\n{TASK}",
    f"For Dr Pepper Zero: a review of the taste.\n{TASK}",
    f"M. 5 tasks remain.\n{TASK}",
    "Mr. John Kirk borrowed $3,000 to pay his bills. He was charged an interest rate of 10% for a 180 day period.",
    f"Dear Dr. Smith, {TASK}",  # a surname alone after a cue
    f"Part 219-09-9999 for Dr. Smith\n{TASK}",  # a 3-2-4 part number with an innocent cue
    f"Order 219-09-9999 shipped on 12.03.2019.\n{TASK}",
    f"Dr. Smith has 123456789 cells on 12.03.1961.\n{TASK}",  # one word after the title, a date
    f"Premium Member\n{TASK}",  # a cue word after a capitalised word is a surname only where NER says so
    f"Gold Member 219-09-9999\n{TASK}",
    f"Die Stadt mit 1234567 Einwohnern ist gut erreichbar.\n{TASK}",
    f"Bestellnummer 0605787210 bitte telefonisch anrufen\n{TASK}",
]


@pytest.mark.slow
@pytest.mark.parametrize(("text", "types"), POSITIVES)
def test_title_and_callback_positives(detector: PiiDetector, text: str, types: set[str]) -> None:
    assert types <= set(detector.detect_text(text).pii_types)


@pytest.mark.slow
def test_a_titled_name_next_to_an_uncued_id_counts_in_a_short_line_only(detector: PiiDetector) -> None:
    """As for a name spaCy finds: an uncued identifier-shaped string next to it makes personal data only in a short,
    header-like line; in a long one it is as often a reference in prose (found in review)."""
    line = ("prof. ines albrecht 078-05-1120 hat gefragt, wie viele Brote ein Bäcker backt, wenn er zwölf Brote pro "
            "Stunde backt und sieben Stunden lang arbeitet; bitte erkläre die Rechnung Schritt für Schritt und nenne "
            "am Ende nur die Zahl.")
    assert len(line) > 200
    assert detector.detect_text(f"{line}\n{TASK}").pii_types == []
    assert {"PERSON", "US_SSN"} <= set(detector.detect_text(f"{line[:31]}\n{TASK}").pii_types)


@pytest.mark.slow
@pytest.mark.parametrize("text", NEGATIVES)
def test_title_and_callback_negatives(detector: PiiDetector, text: str) -> None:
    assert detector.detect_text(text).pii_types == []
