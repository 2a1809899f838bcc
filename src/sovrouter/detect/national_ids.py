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

How much a match stands on its own (the cue rules are :mod:`sovrouter.detect.recognizers`'):

- *self-evident* (found without a cue, unless an innocent cue is nearest): a CPF written ``NNN.NNN.NNN-NN``, an
  upper-case codice fiscale, a NIR grouped ``N NN NN NN NNN NNN NN``. Layout and check together are specific.
- *context* (uncued, ``<TYPE>~id``: counts next to a name or other personal data in a short line): a DNI or NIE,
  a NIR of 15 bare digits, a BSN written ``NNNN.NN.NNN``, a CPF written ``NNNNNNNNN-NN``, a lower-case codice
  fiscale.
- *cue only*: a PESEL, a BSN of 9 bare or ``NNN NNN NNN`` digits, a CPF of 11 bare digits: such digit runs are as
  often phone, order or passport numbers, so only a cue word (``PESEL``, ``BSN``, ``CPF``, ...) makes them one.

A number that fails its check is never a candidate, cue or not (as a Luhn-failing card or SIN).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from stdnum.br import cpf
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.it import codicefiscale
from stdnum.nl import bsn
from stdnum.pl import pesel

NATIONAL_ID_TYPES = ("BR_CPF", "NL_BSN", "ES_NIF", "ES_NIE", "IT_FISCAL_CODE", "FR_NIR", "PL_PESEL")
# national ids that may stand uncued next to a name (``<TYPE>~id``), each in the shapes ``national_ids`` says
NATIONAL_CTX_ID_TYPES = ("BR_CPF", "NL_BSN", "ES_NIF", "ES_NIE", "IT_FISCAL_CODE", "FR_NIR")


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


# every numeric shape above holds 7 digits with at most one separator between two of them (read once, so that the
# six patterns run only on the few segments with such a number)
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
    return out
