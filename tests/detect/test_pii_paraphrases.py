"""The detector on phrasings, positions and formats of our own (not the workload's templates).

Positives put the personal data before, after or inside the task, in English, German and French; negatives are
benchmark-like stories with fictional people and dates, and identifier-shaped innocent numbers.
"""

from __future__ import annotations

import pytest

from sovrouter.detect.detector import PiiDetector

TASK = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many?"

POSITIVES: list[tuple[str, set[str]]] = [
    (f"{TASK}\n\n(Sent by Margaret O'Connor, margaret.oconnor@fastmail.net)", {"EMAIL"}),
    (f"Hi team, quick one from Lukas Brenner - reach me on +49 170 3344556 if unclear.\n{TASK}", {"PHONE"}),
    (f"{TASK}\nMy social security number is 219-09-9999 in case you need it.", {"US_SSN"}),
    (f"Please charge the Visa ending here: 4532 0151 1283 0366.\n\n{TASK}", {"CREDIT_CARD"}),
    (f"Überweisung an DE89 3704 0044 0532 0130 00 (Inhaber Jürgen Weiß) prüfen.\n{TASK}", {"IBAN"}),
    (f"{TASK}\n\nMerci de répondre à claire.dubois@orange.fr, tél. 06 12 34 56 78.", {"EMAIL", "PHONE"}),
    (f"SIN: 130 692 544 - employee file for Priya Natarajan.\n{TASK}", {"CA_SIN"}),
    (f"Her OHIP number is 1234-567-890-AB; please keep it private.\n{TASK}", {"CA_HEALTH_CARD"}),
    (f"Numéro RAMQ du patient : TREM 8503 1512.\n{TASK}", {"CA_HEALTH_CARD"}),
    (f"Date of birth: 14/02/1979. {TASK}", {"DATE_OF_BIRTH"}),
    (f"{TASK} The client, born on March 3, 1962, holds passport number X4471923.", {"PASSPORT"}),
    (f"Geburtsdatum 03.11.1988, Reisepassnummer C4J7X2K91.\n{TASK}", {"DATE_OF_BIRTH", "PASSPORT"}),
    (f"Send the summary to 742 Evergreen Terrace, Springfield, OR 97477 by post.\n{TASK}", {"ADDRESS"}),
    (f"Lieferadresse: Hauptstraße 12, 10115 Berlin.\n{TASK}", {"ADDRESS"}),
    (f"{TASK}\nAdresse de facturation : 18 rue des Lilas, 69003 Lyon.", {"ADDRESS"}),
    (f"Contact: (415) 555-0132 ext. 22\n{TASK}", {"PHONE"}),
    (f"{TASK}\n-- \nDaniel Okafor | daniel.okafor@proton.me | 212-555-0187", {"EMAIL", "PHONE"}),
    (f"Mastercard 5520-0000-0000-0000 was declined for Ms. Ana Ruiz.\n{TASK}", {"CREDIT_CARD"}),
    (f"Rappel : le titulaire Jean-Marc Lefèvre, IBAN FR14 2004 1010 0505 0001 3M02 606.\n{TASK}", {"IBAN"}),
    (f"Patient Thomas Becker (DOB 1955-07-30) asked the following.\n{TASK}", {"DATE_OF_BIRTH"}),
]

NEGATIVES: list[str] = [
    TASK,
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning. How much does she make?",
    "Mr. John Kirk borrowed $3,000 at 10% for 180 days. How much interest will Mr. Kirk pay?",
    "When Lauren was born on January 1, 1990, her grandparents put $1000 in a savings account.",
    "Your parcel 1Z999AA10123456784 was scanned in Memphis. What is 17 * 23?",
    "ISBN-13: 9780306406157. Summarise chapter 3 of the book.",
    "Jira case 219-09-9999 is blocked; explain what a race condition is.",
    "Serial number SN-4429-118-002, firmware 2.14.7: why does the device reboot?",
    "Invoice no. 4532015112830366 is overdue. Draft a polite reminder.",
    "Bestellnummer 3704004405, Lieferung am 03.11.2024. Wie schreibe ich eine Beschwerde?",
    "Facture n° 2024-06-1187, montant 1 250,00 EUR. Rédige une relance.",
    "def f(s):\n    return s.split('@')\nassert f('user@test') == ??",
    "Who was Abraham Lincoln and why is the Gettysburg Address (1863) famous?",
    "Compute 1234567890 mod 97 and explain the steps.",
    "The Treaty of Versailles was signed on 28 June 1919. Discuss its consequences.",
]


@pytest.fixture(scope="module")
def detector() -> PiiDetector:
    return PiiDetector(timeout_ms=60_000)


@pytest.mark.slow
@pytest.mark.parametrize(("text", "types"), POSITIVES)
def test_paraphrased_personal_data_is_found(detector: PiiDetector, text: str, types: set[str]) -> None:
    found = set(detector.detect_text(text).pii_types)
    assert found, "no personal data found"
    assert types <= found


@pytest.mark.slow
@pytest.mark.parametrize("text", NEGATIVES)
def test_benchmark_text_and_innocent_numbers_are_not_personal_data(detector: PiiDetector, text: str) -> None:
    assert detector.detect_text(text).pii_types == []
