"""National identification numbers (``detect/national_ids.py``): Brazilian CPF, Dutch BSN, Spanish DNI/NIE, Italian
codice fiscale, French NIR, Polish PESEL. Shapes and spans, the official check (a failing number is never found,
cue or not), cue words in each language, uncued numbers (self-evident, next to a name, or not at all), innocent
look-alikes; then whole requests through the detector and the policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from sovrouter.build import assemble
from sovrouter.catalog import Catalog, Tenants
from sovrouter.clock import WallClock
from sovrouter.config import Settings
from sovrouter.contracts import Candidate
from sovrouter.detect import national_ids as n
from sovrouter.detect.detector import PII_TYPES, FailClosedDetector, PiiDetector
from sovrouter.detect.recognizers import CueIndex, decide_identifiers
from sovrouter.intake import normalize_chat
from sovrouter.testing import FakeAdapter, MemorySink

TASK = "A baker makes 12 loaves an hour for 7 hours. How many loaves does the baker make?"
NATIONAL = {"BR_CPF", "NL_BSN", "ES_NIF", "ES_NIE", "IT_FISCAL_CODE", "FR_NIR", "PL_PESEL"}
NEW = {"DE_TAX_ID", "BE_NRN", "UK_NINO", "PT_NIF", "CH_AHV", "AT_SVNR"}  # since 2026-11-28


def found(text: str, context: bool = False) -> list[tuple[str, int, int]]:
    return decide_identifiers(text, CueIndex().find(text), context=context)


def ids(text: str, context: bool = False) -> set[str]:
    return {t for t, _, _ in found(text, context)}


# (text with a cue in the number's own language or in English, type, the number as written)
CUED = [
    ("O CPF do cliente é 390.533.447-05, favor atualizar o cadastro.", "BR_CPF", "390.533.447-05"),
    ("Segue meu CPF 52998224725 para o cadastro.", "BR_CPF", "52998224725"),
    ("CPF: 529982247-25", "BR_CPF", "529982247-25"),
    ("Het BSN van de patiënt is 123456782, graag het dossier bijwerken.", "NL_BSN", "123456782"),
    ("Mijn burgerservicenummer: 1234.56.782", "NL_BSN", "1234.56.782"),
    ("BSN-nummer 123 456 782 (zie bijlage)", "NL_BSN", "123 456 782"),
    ("Mi DNI es 12345678Z y necesito cambiar la dirección.", "ES_NIF", "12345678Z"),
    ("NIF del titular: 12.345.678-Z", "ES_NIF", "12.345.678-Z"),
    ("El titular tiene NIE X2482300W desde 2019.", "ES_NIE", "X2482300W"),
    ("número de identidad de extranjero Y-1234567-X", "ES_NIE", "Y-1234567-X"),
    ("Il codice fiscale del paziente è RCCMNL83S18D969H.", "IT_FISCAL_CODE", "RCCMNL83S18D969H"),
    ("codice fiscale: rccmnl83s18d969h", "IT_FISCAL_CODE", "rccmnl83s18d969h"),  # lower case: with its cue
    ("Mon numéro de sécurité sociale est le 2 95 10 99 126 111 93.", "FR_NIR", "2 95 10 99 126 111 93"),
    ("Voici le NIR : 185057800608491", "FR_NIR", "185057800608491"),
    ("carte vitale 1 85 05 78 006 084 91", "FR_NIR", "1 85 05 78 006 084 91"),
    ("Numer PESEL pacjenta: 44051401359.", "PL_PESEL", "44051401359"),
    ("Mój PESEL to 02270803624, proszę o kontakt.", "PL_PESEL", "02270803624"),
    ("patient's PESEL number 90112301234", "PL_PESEL", "90112301234"),
    ("citizen service number 123456782", "NL_BSN", "123456782"),
]


@pytest.mark.parametrize(("text", "typ", "value"), CUED)
def test_cued_national_id_is_found_with_its_span(text: str, typ: str, value: str) -> None:
    start = text.index(value)
    assert found(text) == [(typ, start, start + len(value))]


# (valid number after its cue, the same with a wrong check digit / letter / key)
CHECK_FAILURES = [
    ("CPF 390.533.447-05", "CPF 390.533.447-06"),
    ("CPF 39053344705", "CPF 39053344750"),
    ("CPF 111.111.111-11", None),  # one repeated digit passes the arithmetic, never issued
    ("BSN 123456782", "BSN 123456783"),
    ("burgerservicenummer 1234.56.782", "burgerservicenummer 1234.56.788"),
    ("DNI 12345678Z", "DNI 12345678A"),
    ("NIE X2482300W", "NIE X2482300A"),
    ("codice fiscale RCCMNL83S18D969H", "codice fiscale RCCMNL83S18D969A"),
    ("codice fiscale RCCMNL83S18D969H", "codice fiscale RCCMNL83S32D969V"),  # check right, 32 November is no date
    ("numéro de sécurité sociale 2 95 10 99 126 111 93", "numéro de sécurité sociale 2 95 10 99 126 111 94"),
    ("NIR 185057800608491", "NIR 185157800608457"),  # key right for month 15, which does not exist
    ("PESEL 44051401359", "PESEL 44051401358"),
    ("PESEL 02270803624", "PESEL 02270803625"),
    ("PESEL 90112301234", "PESEL 90133101231"),  # checksum right, month 13 of the 1900s: no date
    ("PESEL 90112301234", "PESEL 50452301231"),  # checksum and date right, but born in 2150
]


@pytest.mark.parametrize(("valid", "invalid"), CHECK_FAILURES)
def test_a_failing_check_is_not_found_even_after_its_cue(valid: str, invalid: str | None) -> None:
    if invalid is None:  # the repeated-digit CPF
        assert ids(valid) == set() and ids(valid, context=True) == set() and n.valid_cpf("390.533.447-05")
        return
    assert ids(valid) & NATIONAL
    assert ids(invalid) == set()
    assert ids(invalid, context=True) == set()  # nor as an uncued context candidate


@pytest.mark.parametrize(("text", "typ", "value"), [
    ("Segue o documento 390.533.447-05 em anexo.", "BR_CPF", "390.533.447-05"),  # the printed CPF layout
    ("Ecco il mio: RCCMNL83S18D969H", "IT_FISCAL_CODE", "RCCMNL83S18D969H"),
    ("Voici le mien : 2 95 10 99 126 111 93", "FR_NIR", "2 95 10 99 126 111 93"),  # the printed NIR grouping
    ("Il mio numero è RCCMNL83S18D969H, grazie", "IT_FISCAL_CODE", "RCCMNL83S18D969H"),
])
def test_self_evident_layouts_need_no_cue(text: str, typ: str, value: str) -> None:
    start = text.index(value)
    assert found(text) == [(typ, start, start + len(value))]


@pytest.mark.parametrize(("text", "typ"), [
    ("Juan Pérez García, 12345678Z", "ES_NIF"),
    ("Amira Haddad X2482300W", "ES_NIE"),
    ("Jan de Vries 1234.56.782", "NL_BSN"),
    ("Marie Dubois 185057800608491", "FR_NIR"),
    ("Ana Souza 529982247-25", "BR_CPF"),
    ("mario rossi rccmnl83s18d969h", "IT_FISCAL_CODE"),
])
def test_uncued_specific_layouts_are_context_candidates(text: str, typ: str) -> None:
    assert ids(text) == set()  # not personal data on their own...
    assert ids(text, context=True) == {typ + "~id"}  # ...only next to a name or other personal data


@pytest.mark.parametrize(("uncued", "cued", "typ"), [
    ("Anna Nowak, 44051401359", "Anna Nowak, PESEL 44051401359", "PL_PESEL"),  # 11 digits: a phone as often
    ("Pieter Bakker 123456782", "Pieter Bakker, BSN 123456782", "NL_BSN"),  # 9 digits: a passport as often
    ("Ana Souza 52998224725", "Ana Souza, CPF 52998224725", "BR_CPF"),
])
def test_bare_digit_runs_need_their_cue(uncued: str, cued: str, typ: str) -> None:
    assert not {t.split("~")[0] for t in ids(uncued, context=True)} & NATIONAL
    assert ids(cued) == {typ}


# (an innocent look-alike, the same number after its own cue)
HARD_NEGATIVES = [
    ("Order 390.533.447-05 shipped on Monday.", "CPF 390.533.447-05"),
    ("Pedido 390.533.447-05 enviado ontem.", "CPF 390.533.447-05"),
    ("Zamówienie nr 44051401359 zostało wysłane.", "PESEL 44051401359"),
    ("Faktura 44051401359 do zapłaty w ciągu 14 dni.", "PESEL 44051401359"),
    ("Bestelnummer 123456782 is verzonden.", "BSN 123456782"),
    ("Factuur 1234.56.782 staat open.", "BSN 1234.56.782"),
    ("Pedido número 12345678Z enviado.", "DNI 12345678Z"),
    ("Fattura RCCMNL83S18D969H del 3 marzo.", "codice fiscale RCCMNL83S18D969H"),
    ("Numéro de commande 2 95 10 99 126 111 93", "NIR 2 95 10 99 126 111 93"),
    ("Tracking number 185057800608491 (colis)", "NIR 185057800608491"),
    ("phone 44051401359, after 6pm", "PESEL 44051401359"),  # a phone cue: a phone number
    ("Bel me op 123 456 782 na zessen", "BSN 123 456 782"),
    ("Compute 52998224725 mod 97.", "CPF 52998224725"),  # a bare number in a maths task
    ("Passengers: 123456782 people flew in 2019.", "BSN 123456782"),
    ("ISBN 9780306406157 and 44051401359", "PESEL 44051401359"),
]


@pytest.mark.parametrize(("negative", "positive"), HARD_NEGATIVES)
def test_innocent_look_alikes_are_not_national_ids(negative: str, positive: str) -> None:
    assert not {t.split("~")[0] for t in ids(negative, context=True)} & NATIONAL
    assert ids(positive) & NATIONAL


def test_shared_cues_confirm_by_shape() -> None:
    # "numéro de sécurité sociale" (a US_SSN cue since the start): 9 digits are an SSN, 15 a French NIR
    assert ids("numéro de sécurité sociale 078-05-1120") == {"US_SSN"}
    assert ids("numéro de sécurité sociale 185057800608491") == {"FR_NIR"}
    assert ids("social security number 2 95 10 99 126 111 93") == {"FR_NIR"}
    assert ids("NIF X2482300W") == {"ES_NIE"}  # a foreign resident's NIF is the NIE
    assert ids("NIE 12345678Z") == {"ES_NIF"}
    assert ids("sécurité sociale 078-05-1120") == {"US_SSN"}  # a NIR cue owns the number; the shape says SSN


def test_cased_cues_only_in_upper_case() -> None:
    # "NIE"/"NIR" are cues; "nie" (German never, Polish not) and "Nir" (a first name) are not
    assert ids("NIE X2482300W") == {"ES_NIE"} and ids("NIR 185057800608491") == {"FR_NIR"}
    assert ids("Ich rufe nie an, Nummer 0176 23456789") == {"PHONE"}
    assert ids("Nir Cohen 0176 23456789", context=True) == {"PHONE~ctx"}
    assert ids("Nie NIE, tylko PESEL 44051401359") == {"PL_PESEL"}


def test_a_cue_belongs_to_the_nearest_number() -> None:
    text = "BSN 123456782, telefoon 0612345678"
    assert found(text) == [("NL_BSN", 4, 13), ("PHONE", 24, 34)]
    text = "CPF 390.533.447-05 / PESEL 44051401359"
    assert found(text) == [("BR_CPF", 4, 18), ("PL_PESEL", 27, 38)]


def test_a_number_is_read_whole() -> None:
    # not the tail of a longer dotted or space-grouped number, nor a number cut short by one
    assert "NL_BSN" not in ids("BSN 06 123 456 782") and "NL_BSN" not in ids("BSN 123 456 782 0")
    assert ids("NIR 2 95 10 99 126 111 93 4") == set() and ids("CPF 1390.533.447-05") == set()
    # a letter-ended id or a bare number may stand next to other numbers
    assert ids("BSN 123456782 12 maart") == {"NL_BSN"}
    assert ids("codice fiscale n. 5 RCCMNL83S18D969H 3 copie") == {"IT_FISCAL_CODE"}


def test_check_helpers() -> None:
    assert n.valid_cpf("390.533.447-05") and not n.valid_cpf("390.533.447-06")
    assert n.valid_bsn("1234.56.782") and not n.valid_bsn("000000000")
    assert n.valid_dni("12.345.678-Z") and not n.valid_dni("12345678A")
    assert n.valid_nie("Y1234567X") and not n.valid_nie("A1234567X")
    assert n.valid_fiscal_code("RCCMNL83S18D969H") and not n.valid_fiscal_code("07973780013")  # a company VAT
    assert n.valid_nir("2 95 10 99 126 111 93") and not n.valid_nir("3 95 10 99 126 111 43")  # key right, sex 3
    assert n.valid_pesel("44051401359") and not n.valid_pesel("44051401358")
    assert set(PII_TYPES) >= NATIONAL


@pytest.fixture(scope="module")
def detector() -> PiiDetector:
    return PiiDetector(timeout_ms=60_000)


SENTENCES: list[tuple[str, set[str]]] = [
    # with a cue word
    ("Bom dia, o CPF do titular é 529.982.247-25, pode atualizar o cadastro?", {"BR_CPF"}),
    ("Het BSN van mevrouw is 123456782; graag de aanvraag verwerken.", {"NL_BSN"}),
    ("Hola, mi DNI es 12345678Z y quiero abrir una cuenta.", {"ES_NIF"}),
    ("El NIE del cliente es X2482300W.", {"ES_NIE"}),
    ("Buongiorno, il codice fiscale del paziente è RCCMNL83S18D969H.", {"IT_FISCAL_CODE"}),
    ("Bonjour, mon numéro de sécurité sociale est le 2 95 10 99 126 111 93.", {"FR_NIR"}),
    ("Dzień dobry, mój numer PESEL to 44051401359.", {"PL_PESEL"}),
    # without one: a printed layout, or a specific one next to a name
    ("Segue o documento do cliente: 529.982.247-25", {"BR_CPF"}),
    ("Ecco i dati: RCCMNL83S18D969H", {"IT_FISCAL_CODE"}),
    ("Voici le numéro de Marie : 2 95 10 99 126 111 93", {"FR_NIR"}),
    ("Juan Pérez García, 12345678Z", {"PERSON", "ES_NIF"}),
    ("Jan de Vries 1234.56.782", {"PERSON", "NL_BSN"}),
    # structured: the cue is the field name
    ('{"nome": "Ana Souza", "cpf": "52998224725"}', {"BR_CPF", "PERSON"}),
    ("naam;bsn\nPieter Bakker;123456782", {"NL_BSN", "PERSON"}),
    # since 2026-11-28: six more types (test_national_ids_more.py)
    ("Guten Tag, meine Steuer-ID ist 25 813 647 911, bitte in die Lohnabrechnung übernehmen.", {"DE_TAX_ID"}),
    ("Goedemiddag, mijn rijksregisternummer is 90.02.14-123.03.", {"BE_NRN"}),
    ("Bonjour, voici mon numéro national : 05112345635.", {"BE_NRN"}),
    ("Hi, my National Insurance number is AB 12 34 56 C, please update payroll.", {"UK_NINO"}),
    ("Bom dia, o meu número de contribuinte é 284 719 358.", {"PT_NIF"}),
    ("Grüezi, meine AHV-Nummer ist 756.1234.5678.97.", {"CH_AHV"}),
    ("Servus, meine SVNR lautet 1237 010180.", {"AT_SVNR"}),
    # without a cue: a printed layout, or a specific one next to a name
    ("Here it is: AB 12 34 56 C", {"UK_NINO"}),
    ("Hans Müller 25 813 647 911", {"PERSON", "DE_TAX_ID"}),
    ("John Smith AB123456C", {"PERSON", "UK_NINO"}),
    # structured: the cue is the field name
    ('{"name": "Hans Müller", "steuer_id": "25813647911"}', {"DE_TAX_ID", "PERSON"}),
    ("nome;nif\nJoão Silva;123456789", {"PT_NIF", "PERSON"}),
]


@pytest.mark.slow
@pytest.mark.parametrize(("text", "types"), SENTENCES)
def test_national_ids_in_requests(detector: PiiDetector, text: str, types: set[str]) -> None:
    det = detector.detect_text(f"{text}\n\n{TASK}")
    assert types <= set(det.pii_types) and det.has_personal_data


@pytest.mark.slow
@pytest.mark.parametrize(("negative", "positive"), [
    ("Zamówienie nr 44051401359 zostało wysłane.", "Mój PESEL: 44051401359."),
    ("Bestelnummer 123456782 is verzonden.", "Mijn BSN: 123456782."),
    ("Pedido 390.533.447-05 enviado.", "Meu CPF: 390.533.447-05."),
    ("Compute 52998224725 mod 97 and 12345678 mod 23.", "Meu CPF: 52998224725."),
    ("Bestellnummer 25813647911 wurde versandt.", "Meine Steuer-ID: 25813647911."),
    ("Encomenda 123456789 enviada.", "O meu NIF: 123456789."),
    ("Order AB 12 34 56 C shipped.", "My NI number: AB 12 34 56 C."),
    ("Compute 90021412303 mod 97 and 123456789 mod 11.", "Mijn rijksregisternummer: 90021412303."),
    ("Budget prévu : 25 813 647 911 € sur dix ans.", "Steuer-ID: 25 813 647 911"),  # a French-grouped amount
])
def test_look_alikes_in_requests(detector: PiiDetector, negative: str, positive: str) -> None:
    assert detector.detect_text(f"{negative}\n\n{TASK}").pii_types == []
    assert set(detector.detect_text(f"{positive}\n\n{TASK}").pii_types) & (NATIONAL | NEW)


@pytest.mark.parametrize(("tenant", "text"), [
    ("clinic-ca", "Het BSN van de patiënt is 123456782. Vat het dossier samen."),
    ("clinic-ca", "Il codice fiscale del paziente è RCCMNL83S18D969H. Riassumi la cartella."),
    ("eurobank", "Meu CPF é 529.982.247-25, preciso do extrato."),
    ("eurobank", "Mon numéro de sécurité sociale : 2 95 10 99 126 111 93. Résumez le dossier."),
    ("clinic-ca", "Mijn rijksregisternummer is 90.02.14-123.03. Vat het dossier samen."),
    ("clinic-ca", "My NI number is AB 12 34 56 C. Summarise my record."),
    ("eurobank", "Meine Steuer-ID ist 25 813 647 911, bitte den Kontoauszug erklären."),
    ("eurobank", "O meu NIF é 123456789, preciso do extrato."),
])
async def test_a_national_id_takes_the_personal_data_branch(catalog: Catalog, tenants: Tenants, tenant: str,
                                                            text: str) -> None:
    """clinic-ca: personal data stays on premises; eurobank: in the EU or on premises."""
    adapters = {Candidate(slot=s.id, deployment=d.id): FakeAdapter(Candidate(slot=s.id, deployment=d.id))
                for s, d in catalog.pairs()}
    cfg = Settings(catalog=Path("x"), tenants=Path("y"), policy="cedar", detector="none")
    pipe = assemble(cfg, catalog, tenants, adapters, WallClock(), MemorySink())
    pipe.detector = FailClosedDetector(PiiDetector())
    out = await pipe.handle(normalize_chat({"messages": [{"role": "user", "content": text}]}, tenant=tenant,
                                           request_id="r"))
    assert set(out.record.detected_pii_types) & (NATIONAL | NEW)
    allowed = {s.id + "/" + d.id for s, d in catalog.pairs()
               if d.on_premises or (tenant == "eurobank" and d.region == "EU")}
    assert {v.candidate.key for v in out.record.policy if v.allowed} <= allowed
    assert out.record.final is not None and out.record.final.key in allowed


@pytest.mark.parametrize(("text", "typ"), [
    ("SSN/CPF 078-05-1120", "US_SSN"),
    ("SSN (or CPF): 078-05-1120", "US_SSN"),
    ("Passport or CPF: 123456789", "PASSPORT"),
    ("passport no. / BSN: 123456789", "PASSPORT"),
    ("Tel. o DNI: 612 345 678", "PHONE"),
    ("Date of birth / codice fiscale: 12/03/1985", "DATE_OF_BIRTH"),
    ("DOB / PESEL: 1985-03-12", "DATE_OF_BIRTH"),
])
def test_a_national_id_cue_does_not_hide_an_earlier_cue_of_another_type(text: str, typ: str) -> None:
    # a form label naming two documents: the number is still read by the cue of its own type (before the
    # national-id cue words, these were found; review 2026-11-28)
    assert ids(text) == {typ}


@pytest.mark.parametrize(("text", "typ"), [
    ("Pasaporte/DNI: AB1234567, Juan Pérez", "PASSPORT~id"),
    ("Número de pasaporte o DNI: X12345678 de Juan Pérez", "PASSPORT~id"),
    ("Jan Kowalski, wizyta za 3 dni: 612 345 678", "CA_SIN~id"),  # Polish "dni": days
])
def test_a_national_id_cue_is_no_cue_for_a_number_of_another_shape(text: str, typ: str) -> None:
    # as before the national-id cue words: an uncued identifier next to a name is a context candidate
    assert typ in ids(text, context=True)
    assert "BSN" not in "".join(ids("BSN 123456783", context=True))  # a number of its own shape stays its own
    assert ids("BSN 123456783", context=True) == set()
