"""National identification numbers a European bank's or a clinic's users paste: shapes and official checks.

- ``BR_CPF``, Brazilian CPF: ``NNN.NNN.NNN-NN``, ``NNNNNNNNN-NN`` or 11 digits; two mod-11 check digits
  (``stdnum.br.cpf``); a run of one repeated digit passes that arithmetic and is no CPF.
- ``NL_BSN``, Dutch burgerservicenummer: 9 digits, ``NNNN.NN.NNN`` or ``NNN NNN NNN``; the "elfproef" 11-check
  (``stdnum.nl.bsn``).
- ``ES_NIF``, Spanish DNI (a Spaniard's NIF): 8 digits and a letter (``12.345.678-Z`` too); the check letter of
  the number mod 23 (``stdnum.es.dni``).
- ``ES_NIE``, Spanish NIE (a foreign resident's NIF): ``X``/``Y``/``Z``, 7 digits and a letter; the same mod-23
  check letter (``stdnum.es.nie``).
- ``IT_FISCAL_CODE``, Italian codice fiscale: 16 characters ``AAAAAA00A00A000A`` (digits may be letters after an
  omocodia); the check character and the birth date it holds (``stdnum.it.codicefiscale``).
- ``FR_NIR``, French NIR (numéro de sécurité sociale): 15 digits, ``2 95 10 99 126 111 93``; the key
  ``97 - (first 13 digits mod 97)`` (``stdnum.fr.nir``, Corsica's 2A/2B too), sex 1/2 (7/8: temporary number)
  and month 01-12 or a code INSEE gives an unknown month (20, 30-42, 50-99).
- ``PL_PESEL``, Polish PESEL: 11 digits; the weighted checksum 1-3-7-9 and a birth date from 1900 to today
  (``stdnum.pl.pesel``).

Since 2026-11-28 also:

- ``DE_TAX_ID``, German Steuerliche Identifikationsnummer (IdNr): 11 digits, ``NN NNN NNN NNN``; the ISO 7064
  MOD 11,10 check digit, no leading 0, and in the first ten digits exactly one digit twice or three times, never
  three in a row (``stdnum.de.idnr``, the last rule ours: BZSt/ELSTER's "Prüfung der Steueridentifikationsnummer").
- ``BE_NRN``, Belgian national register number (rijksregisternummer, numéro de registre national, NISS/INSZ):
  ``YY.MM.DD-SSS.CC`` or 11 digits; check ``97 - (first 9 digits mod 97)``, with a ``2`` before them for a birth
  from 2000 (``stdnum.be.nn``), month 01-12 (00: unknown), a real day (00: unknown), counter 001-998, not born
  after today. BIS numbers (month + 20/40) are not read.
- ``UK_NINO``, UK National Insurance number: ``AB 12 34 56 C``; no check digit, so the letters are: neither D, F,
  I, Q, U, V nor (second) O, no BG, GB, KN, NK, NT, TN or ZZ prefix (HMRC's never-issued ones), suffix A-D.
- ``PT_NIF``, Portuguese NIF (número de contribuinte): 9 digits, ``NNN NNN NNN``; the mod-11 check digit
  (``stdnum.pt.nif``) and a person's first digits 1, 2, 3 or 45 (5-9 and 7x are companies, estates, funds: no
  person's data).
- ``CH_AHV``, Swiss AHV/AVS number: ``756.NNNN.NNNN.NN`` or 13 digits; the EAN-13 check (``stdnum.ch.ssn``).
- ``AT_SVNR``, Austrian Sozialversicherungsnummer: ``NNNN DDMMYY`` or 10 digits; the weighted check digit (the
  4th; ``stdnum.at.vnr``) and a real day and month (a number of an unknown birth date is not read).

How much a match stands on its own (the cue rules are :mod:`sovrouter.detect.recognizers`'):

- *self-evident* (found without a cue, unless an innocent cue is nearest): a CPF written ``NNN.NNN.NNN-NN``, an
  upper-case codice fiscale, a NIR grouped ``N NN NN NN NNN NNN NN``, a Belgian number written
  ``YY.MM.DD-SSS.CC``, an AHV number written ``756.NNNN.NNNN.NN``. Layout and check together are specific. And,
  with no check, an upper-case NINO in HMRC's printed layout ``AB 12 34 56 C``: two letters of the allowed set, three
  pairs of digits and a suffix A-D is no other number's or code's layout.
- *context* (uncued, ``<TYPE>~id``: counts next to a name or other personal data in a short line): a DNI or NIE,
  a NIR of 15 bare digits, a BSN written ``NNNN.NN.NNN``, a CPF written ``NNNNNNNNN-NN``, a lower-case codice
  fiscale, an IdNr grouped ``NN NNN NNN NNN``, a Belgian number grouped otherwise (``YYMMDD-SSS-CC``, ...), an
  AHV number grouped by spaces, an upper-case NINO written otherwise (``AB123456C`` is as often a part or
  reference code).
- *cue only*: a PESEL, a BSN of 9 bare or ``NNN NNN NNN`` digits, a CPF, IdNr, Belgian or AHV number of bare
  digits, any Portuguese NIF or Austrian SVNR, a lower-case NINO: such digit runs are as often phone, order or
  passport numbers (a Lisbon landline is 9 digits from 2), so only a cue word (``PESEL``, ``BSN``, ``CPF``,
  ``Steuer-ID``, ``rijksregisternummer``, ``contribuinte``, ``SVNR``, ``NI number``, ...) makes them one.

A number that fails its check is never a candidate, cue or not (as a Luhn-failing card or SIN).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from stdnum.at import vnr
from stdnum.be import nn
from stdnum.br import cpf
from stdnum.ch import ssn as ahv
from stdnum.de import idnr
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.it import codicefiscale
from stdnum.nl import bsn
from stdnum.pl import pesel
from stdnum.pt import nif

NATIONAL_ID_TYPES = ("BR_CPF", "NL_BSN", "ES_NIF", "ES_NIE", "IT_FISCAL_CODE", "FR_NIR", "PL_PESEL", "DE_TAX_ID",
                     "BE_NRN", "UK_NINO", "PT_NIF", "CH_AHV", "AT_SVNR")
# national ids that may stand uncued next to a name (``<TYPE>~id``), each in the shapes ``national_ids`` says
NATIONAL_CTX_ID_TYPES = ("BR_CPF", "NL_BSN", "ES_NIF", "ES_NIE", "IT_FISCAL_CODE", "FR_NIR", "DE_TAX_ID", "BE_NRN",
                         "UK_NINO", "CH_AHV")


def _number(body: str, flags: int = 0, *, digit_first: bool = True) -> re.Pattern[str]:
    """A whole number: not a piece of a longer word or of a dotted/dashed/slashed number, nor (when it starts with
    a digit) the tail of a space-grouped digit run. A space-grouped shape also ends with ``_NO_MORE_GROUPS``
    ("06 123 456 789 0" holds no "123 456 789")."""
    before = r"(?<![\w.\-/+])" + (r"(?<!\d )" if digit_first else "")
    return re.compile(rf"{before}(?:{body})(?![\w\-/]|[.,]\d)", flags)


_NO_MORE_GROUPS = r"(?! \d)"
CPF_RE = _number(r"\d{3}\.\d{3}\.\d{3}-\d{2}|\d{9}-\d{2}|\d{11}")
BSN_RE = _number(rf"\d{{9}}|\d{{4}}\.\d{{2}}\.\d{{3}}|\d{{3}}([ .\-])\d{{3}}\1\d{{3}}{_NO_MORE_GROUPS}")
DNI_RE = _number(r"(?:\d{8}|\d{2}\.\d{3}\.\d{3})[ \-]?[A-Za-z]")
NIE_RE = _number(r"[XYZxyz][ \-]?\d{7}[ \-]?[A-Za-z]", digit_first=False)
_CF_DIGIT = "[0-9LMNPQRSTUV]"
FISCAL_CODE_RE = _number(rf"[A-Z]{{6}}{_CF_DIGIT}{{2}}[ABCDEHLMPRST]{_CF_DIGIT}{{2}}[A-Z]{_CF_DIGIT}{{3}}[A-Z]", re.I,
                         digit_first=False)
NIR_RE = _number(r"[1278](?P<s>[ .]?)\d{2}(?P=s)\d{2}(?P=s)(?:\d{2}|2[AB])(?P=s)\d{3}(?P=s)\d{3}(?:(?P=s)| )\d{2}"
                 + _NO_MORE_GROUPS)
PESEL_RE = _number(r"\d{11}")
DE_TAX_ID_RE = _number(rf"[1-9]\d{{10}}|[1-9]\d \d{{3}} \d{{3}} \d{{3}}{_NO_MORE_GROUPS}")
_BE_PRINTED = re.compile(r"\d{2}\.\d{2}\.\d{2}-\d{3}\.\d{2}")  # as on the eID card
BE_NRN_RE = _number(rf"\d{{2}}\.\d{{2}}\.\d{{2}}[ \-]\d{{3}}[ .]\d{{2}}{_NO_MORE_GROUPS}"
                    rf"|\d{{6}}([ \-])\d{{3}}\1\d{{2}}{_NO_MORE_GROUPS}"
                    rf"|\d{{2}} \d{{2}} \d{{2}} \d{{3}} \d{{2}}{_NO_MORE_GROUPS}|\d{{11}}")
_NINO_PRINTED = re.compile(r"[A-Z]{2} \d{2} \d{2} \d{2} [A-D]")  # HMRC's layout
NINO_RE = _number(r"[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]", re.I, digit_first=False)
PT_NIF_RE = _number(rf"(?:[123]\d|45)\d{{7}}|(?:[123]\d\d|45\d) \d{{3}} \d{{3}}{_NO_MORE_GROUPS}")
AHV_RE = _number(rf"756(?P<a>[ .])\d{{4}}(?P=a)\d{{4}}(?P=a)\d{{2}}{_NO_MORE_GROUPS}|756\d{{10}}")
SVNR_RE = _number(rf"[1-9]\d{{3}} \d{{6}}{_NO_MORE_GROUPS}|[1-9]\d{{9}}")


# every numeric shape above holds 7 digits with at most one separator between two of them (read once, so that the
# numeric patterns run only on the few segments with such a number; a NINO holds 6 and is read before)
_SEVEN_DIGITS = re.compile(r"\d(?:[ .\-]?\d){6}")


def _compact(s: str) -> str:
    return re.sub(r"[ .\-]", "", s).upper()


def _one_digit(d: str) -> bool:
    """``111.111.111-11``, ``000000000``: pass their check arithmetic, never issued."""
    return len(set(d)) == 1


def valid_cpf(s: str) -> bool:
    d = _compact(s)
    return len(d) == 11 and not _one_digit(d) and cpf.is_valid(d)


def valid_bsn(s: str) -> bool:
    d = _compact(s)
    return len(d) == 9 and not _one_digit(d[:-1]) and bsn.is_valid(d)


def valid_dni(s: str) -> bool:
    d = _compact(s)
    return len(d) == 9 and not _one_digit(d[:-1]) and dni.is_valid(d)


def valid_nie(s: str) -> bool:
    d = _compact(s)
    return len(d) == 9 and nie.is_valid(d)


def valid_fiscal_code(s: str) -> bool:
    """16 characters only (``stdnum`` also takes an 11-digit company VAT number as a codice fiscale)."""
    d = _compact(s)
    return len(d) == 16 and codicefiscale.is_valid(d)


def _nir_month_ok(month: int) -> bool:
    # 01-12; INSEE gives 20, 30-42 or 50-99 to people whose birth month is unknown
    return 1 <= month <= 12 or month == 20 or 30 <= month <= 42 or month >= 50


def valid_nir(s: str) -> bool:
    d = _compact(s)
    return (len(d) == 15 and d[0] in "1278" and d[3:5].isdigit() and _nir_month_ok(int(d[3:5]))
            and nir.is_valid(d))


def valid_pesel(s: str) -> bool:
    """The weighted checksum and a real birth date from 1900 to today (a later or 19th-century one is no living
    person's)."""
    d = _compact(s)
    if len(d) != 11 or not pesel.is_valid(d):
        return False
    born = pesel.get_birth_date(d)
    return dt.date(1900, 1, 1) <= born <= dt.date.today()


_THREE_IN_A_ROW = re.compile(r"(\d)\1\1")


def valid_de_tax_id(s: str) -> bool:
    """``stdnum``'s check (MOD 11,10; one digit twice or three times in the first ten) and, ours, never the same digit
    three times in a row ("11123456786" passes the rest)."""
    d = _compact(s)
    return len(d) == 11 and idnr.is_valid(d) and _THREE_IN_A_ROW.search(d[:10]) is None


def valid_be_nrn(s: str) -> bool:
    """``stdnum``'s mod-97 check (both centuries) and month, then what it lets through: a day past the month's end
    (only 00 means unknown), a day after month 00 above 09 (the sixth digit counts the overflows), counter 000 or
    999, a birth date after today."""
    d = _compact(s)
    if len(d) != 11 or not d.isdigit() or not nn.is_valid(d) or not 1 <= int(d[6:9]) <= 998:
        return False
    born = nn.get_birth_date(d)
    if born is not None:
        return born <= dt.date.today()
    month, day = int(d[2:4]), int(d[4:6])
    return day <= 9 if month == 0 else day == 0


_NINO_NOT_ISSUED = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})


def valid_nino(s: str) -> bool:
    """HMRC's allocation rules (there is no check digit): no D, F, I, Q, U, V in the prefix nor O second, none of the
    prefixes never issued, suffix A-D."""
    d = re.sub(r"\s", "", s).upper()
    return (len(d) == 9 and d[0] not in "DFIQUV" and d[1] not in "DFIOQUV" and d[:2] not in _NINO_NOT_ISSUED
            and d[2:8].isdigit() and d[8] in "ABCD")


def valid_pt_nif(s: str) -> bool:
    """A person's NIF: first digits 1, 2, 3 or 45 (``PT_NIF_RE`` reads no other), the mod-11 check digit."""
    d = _compact(s)
    return len(d) == 9 and d.startswith(("1", "2", "3", "45")) and not _one_digit(d[:-1]) and nif.is_valid(d)


def valid_ahv(s: str) -> bool:
    d = _compact(s)
    return len(d) == 13 and ahv.is_valid(d)


def valid_svnr(s: str) -> bool:
    """The check digit (4th) and a real DDMMYY (a number whose birth date was unknown is not read)."""
    d = _compact(s)
    if len(d) != 10 or not vnr.is_valid(d):
        return False
    try:
        dt.date(2000 + int(d[8:10]), int(d[6:8]), int(d[4:6]))  # 2000: a leap year, as 29 Feb of any century
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class IdMatch:
    """An identifier-shaped match and how much it stands on its own (``recognizers`` decides with the cues)."""

    type: str
    start: int
    end: int
    self_evident: bool  # found without a cue (unless an innocent cue is nearest)
    context_ok: bool = True  # uncued, it may stand as ``<TYPE>~id`` next to a name or other personal data


def national_ids(text: str) -> list[IdMatch]:
    """Every national-id-shaped string in ``text`` whose check passes."""
    out: list[IdMatch] = []
    for m in FISCAL_CODE_RE.finditer(text):
        if valid_fiscal_code(m.group(0)):
            out.append(IdMatch("IT_FISCAL_CODE", m.start(), m.end(), m.group(0).isupper(), True))
    for m in NINO_RE.finditer(text):
        s = m.group(0)
        if valid_nino(s):
            upper = s.isupper()  # a lower-case one only after its cue
            out.append(IdMatch("UK_NINO", m.start(), m.end(), upper and _NINO_PRINTED.fullmatch(s) is not None,
                               upper))
    if not _SEVEN_DIGITS.search(text):
        return out
    for m in CPF_RE.finditer(text):
        s = m.group(0)
        if valid_cpf(s):
            out.append(IdMatch("BR_CPF", m.start(), m.end(), "." in s, "-" in s))
    for m in BSN_RE.finditer(text):
        if valid_bsn(m.group(0)):
            dotted = re.fullmatch(r"\d{4}\.\d{2}\.\d{3}", m.group(0)) is not None  # the way BSN is printed
            out.append(IdMatch("NL_BSN", m.start(), m.end(), False, dotted))
    for m in DNI_RE.finditer(text):
        if valid_dni(m.group(0)):
            out.append(IdMatch("ES_NIF", m.start(), m.end(), False, True))
    for m in NIE_RE.finditer(text):
        if valid_nie(m.group(0)):
            out.append(IdMatch("ES_NIE", m.start(), m.end(), False, True))
    for m in NIR_RE.finditer(text):
        s = m.group(0)
        if valid_nir(s):
            grouped = m.group("s") != ""
            out.append(IdMatch("FR_NIR", m.start(), m.end(), grouped, grouped or s.isdigit()))
    for m in PESEL_RE.finditer(text):
        if valid_pesel(m.group(0)):
            out.append(IdMatch("PL_PESEL", m.start(), m.end(), False, False))
    return out + _more_national_ids(text)


def _more_national_ids(text: str) -> list[IdMatch]:
    """The numeric ids added on 2026-11-28 (``national_ids`` reads them once ``_SEVEN_DIGITS`` matched)."""
    out: list[IdMatch] = []
    for m in DE_TAX_ID_RE.finditer(text):
        s = m.group(0)
        if valid_de_tax_id(s):
            out.append(IdMatch("DE_TAX_ID", m.start(), m.end(), False, not s.isdigit()))
    for m in BE_NRN_RE.finditer(text):
        s = m.group(0)
        if valid_be_nrn(s):
            out.append(IdMatch("BE_NRN", m.start(), m.end(), _BE_PRINTED.fullmatch(s) is not None, not s.isdigit()))
    for m in PT_NIF_RE.finditer(text):
        if valid_pt_nif(m.group(0)):
            out.append(IdMatch("PT_NIF", m.start(), m.end(), False, False))
    for m in AHV_RE.finditer(text):
        s = m.group(0)
        if valid_ahv(s):
            out.append(IdMatch("CH_AHV", m.start(), m.end(), m.group("a") == ".", not s.isdigit()))
    for m in SVNR_RE.finditer(text):
        if valid_svnr(m.group(0)):
            out.append(IdMatch("AT_SVNR", m.start(), m.end(), False, False))
    return out
