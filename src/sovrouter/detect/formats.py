"""Shapes and checksums of the personal identifiers the detector knows (en/de/fr).

Every check that has a published algorithm uses a kept library: IBAN (``schwifty``: country length and
ISO 7064 mod 97), Luhn for card numbers and Canadian SIN (``python-stdnum``), phone-number plausibility
(``phonenumbers``). Formats with no checksum (passport, US SSN, Ontario health card) are only accepted next to a
cue word (see :mod:`sovrouter.detect.cues`).
"""

from __future__ import annotations

import datetime as dt
import re

import phonenumbers
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException
from stdnum import luhn
from stdnum.ca import sin as ca_sin
from stdnum.exceptions import ValidationError as StdnumError

EMAIL = re.compile(
    # an internationalised domain (jane@müller.de) is a mailbox too: Unicode letters in its labels (2026-11-28)
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[^\W_](?:[\w-]*)(?:\.[\w-]+)*\.[^\W\d_]{2,24}(?![\w-])"
)
# A test fixture's line (an assertion or a comparison): a quoted address there is a code literal, and a quoted value
# is not a field's value (recognizers.EmailRecognizer, structured key="value" views). Until 2026-11-28 any
# code-looking line counted, so a pasted JSON record, an SQL statement or send_email("jane.roe@gmail.com", ...)
# holding someone's mailbox was judged free of it (review).
FIXTURE = re.compile(r"==|\bassert\w*\b|\bexpect\(")
# RFC 2606 / 6761 reserved names: documentation examples, never a real person's mailbox.
RESERVED_MAIL = re.compile(r"@(?:[\w-]+\.)*(?:example\.(?:com|org|net)|example|test|invalid|localhost)$", re.I)

IBAN_RE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ \-./]?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])")
CARD_RE = re.compile(r"(?<![\w-])\d(?:[ \-]?\d){11,18}(?![\w-])")
# groups cut by dots (since 2026-11-28): "4111.1111.1111.1111", Amex "3782.822463.10005"; a separate pattern, so a
# dotted number before a spaced card ("1.4111 1111 ...") never swallows it
CARD_DOT_RE = re.compile(r"(?<![\w.-])(?:\d{4}(?:\.\d{4}){2,3}(?:\.\d{1,3})?|\d{4}\.\d{6}\.\d{4,5})(?![\w-]|\.\d)")
# one separator throughout: space, hyphen, or (since 2026-11-28) a dot or a slash ("SSN 078.05.1120")
SSN_RE = re.compile(r"(?<![\w-])\d{3}([ \-./]?)\d{2}\1\d{4}(?![\w-])")
SIN_RE = re.compile(r"(?<![\w-])\d{3}([ \-./]?)\d{3}\1\d{3}(?![\w-])")
ONTARIO_HC_RE = re.compile(r"(?<![\w-])\d{4}([ \-]?)\d{3}\1\d{3}(?:[ \-]?[A-Z]{2})?(?![\w-])")
RAMQ_RE = re.compile(r"(?<![\w-])[A-Z]{4} ?\d{4} ?\d{4}(?![\w-])")
PASSPORT_RE = re.compile(r"(?<![\w-])(?=[A-Z0-9]*\d)[A-Z0-9]{6,9}(?![\w-])")
PHONE_RE = re.compile(
    r"(?<![\w+])(?:\+|00)?\(?\d[\d ().\-/]{5,22}\d(?:\s?(?:x|ext\.?|extension|#)\s?\d{1,6})?(?![\w])", re.I
)
_MONTHS = (
    "jan(?:uary|uar|vier)?|feb(?:ruary|ruar)?|févr(?:ier)?|fevr(?:ier)?|mar(?:ch|s)?|märz|apr(?:il)?|avr(?:il)?"
    "|may|mai|jun(?:e|i)?|juin|jul(?:y|i)?|juil(?:let)?|aug(?:ust)?|août|sep(?:t(?:ember|embre)?)?"
    "|oct(?:ober|obre)?|okt(?:ober)?|nov(?:ember|embre)?|dec(?:ember)?|dez(?:ember)?|déc(?:embre)?"
)
DATE_RE = re.compile(
    r"(?<![\w/.-])(?:"
    r"\d{1,2}[/.\-]\d{1,2}[/.\-](?:\d{4}|\d{2})"
    r"|\d{4}-\d{1,2}-\d{1,2}"
    rf"|\d{{1,2}}\.?\s(?:{_MONTHS})\.?\s\d{{4}}"
    rf"|(?:{_MONTHS})\.?\s\d{{1,2}}(?:st|nd|rd|th)?,?\s\d{{4}}"
    r")(?![\w/-])",
    re.I,
)

# --- addresses: a street line followed by a postal line, or a military address
_CAP = r"[A-ZÀ-ÖØ-Þ][\w'’.\-]*"
US_ADDRESS = re.compile(
    rf"\b\d{{1,6}}(?: {_CAP}){{1,5}}(?: (?:Apt\.?|Suite|Unit|Ste\.?|#) ?\w+)?,? {_CAP}(?: {_CAP}){{0,3}},? "
    r"[A-Z]{2} \d{5}(?:-\d{4})?\b"
)
CA_ADDRESS = re.compile(
    rf"\b\d{{1,6}},?(?: [\w'’.\-]+){{1,6}},? {_CAP}(?: [\w'’.\-]+){{0,3}},? "
    r"(?:[A-Z]{2},? )?[A-CEGHJ-NPR-TVXY]\d[A-CEGHJ-NPR-TV-Z] ?\d[A-CEGHJ-NPR-TV-Z]\d\b"
)
MILITARY_ADDRESS = re.compile(
    r"\b(?:PSC \d{3,5}, Box \d{3,5}|Unit \d{3,5} Box \d{3,5}|(?:USNS|USNV|USS|USCGC) [A-Z][a-z]+),? "
    r"(?:APO|FPO|DPO) A[AEP] \d{5}\b"
)
# German / French: "<street> <number>, <5-digit postcode> <City>" or "<number>, <street>, <postcode> <City>"
EU_ADDRESS = re.compile(
    rf"(?:\b\d{{1,4}}(?: ?(?:bis|ter|[a-z]))?,? )?(?:{_CAP}|rue|avenue|boulevard|bd|chemin|impasse|allée|place|"
    rf"quai|route|cours|voie|square|passage|rond-point)(?:[ \-][\w'’.\-]+){{0,5}}"
    rf"(?: \d{{1,4}}[a-z]?(?:[/\-]\d{{1,4}})?)?"
    rf",? \d{{5}} {_CAP}(?:[ \-]{_CAP}){{0,3}}"
)
STREET_WORDS = re.compile(
    r"(?:stra(?:ß|ss)e|str\.|gasse|weg|platz|allee|ring|damm|ufer|chaussee|steig|pfad|markt|rue|avenue|boulevard|"
    r"chemin|impasse|allée|place|quai|route|cours|voie|square|passage)",
    re.I,
)


def digits(s: str) -> str:
    return "".join(ch for ch in s if ch.isdigit())


def valid_iban(s: str) -> str | None:
    """Return the longest prefix (by whole groups) of ``s`` that is a valid IBAN, else ``None``."""
    compact = s.replace(" ", "").replace("-", "").replace(".", "").replace("/", "").upper()
    for end in range(len(compact), 14, -1):
        try:
            IBAN(compact[:end])
        except SchwiftyException:
            continue
        return compact[:end]
    return None


_CARD_PREFIXES = (
    r"4\d{12}(?:\d{3})?(?:\d{3})?|5[1-5]\d{14}|2(?:2[2-9]|[3-6]\d|7[01])\d{13}|2720\d{12}|3[47]\d{13}"
    r"|3(?:0[0-5]|[68]\d)\d{11,16}|6(?:011|5\d{2}|4[4-9]\d)\d{12,15}|35\d{14,17}"
    r"|(?:2131|1800)\d{11}|62\d{14,17}|(?:5018|5020|5038|5[6-8]\d\d|6304|6759|676[1-3]|0604|6390)\d{8,15}"
)
_CARD_IIN = re.compile(rf"^(?:{_CARD_PREFIXES})$")


def card_self_evident(s: str) -> bool:
    """15 or 16 digits of a major scheme: a card number even without the word "card" nearby."""
    return len(digits(s)) in (15, 16)


def valid_card(s: str) -> bool:
    """Issuer prefix and length of a known scheme, card-like grouping, and the Luhn check digit."""
    groups = re.split(r"[ \-.]", s)
    if len(groups) > 1 and not (all(len(g) == 4 for g in groups[:-1]) or [len(g) for g in groups] in
                                ([4, 6, 5], [4, 6, 4])):
        return False
    d = digits(s)
    return bool(_CARD_IIN.match(d)) and luhn.is_valid(d)


def valid_ssn(s: str) -> bool:
    d = digits(s)
    area, group, serial = d[:3], d[3:5], d[5:]
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


def valid_sin(s: str) -> bool:
    try:
        ca_sin.validate(digits(s))
    except StdnumError:
        return False
    return True


def valid_ramq(s: str) -> bool:
    """Quebec RAMQ: 3 letters of the surname, 1 of the given name, YY MM(+50 for women) DD, 2 digits."""
    d = digits(s)
    month, day = int(d[2:4]), int(d[4:6])
    return (1 <= month <= 12 or 51 <= month <= 62) and 1 <= day <= 31


def phone_digits_ok(s: str) -> bool:
    main = re.split(r"(?i)\s?(?:x|ext\.?|extension|#)\s?\d+$", s)[0]
    return 7 <= len(digits(main)) <= 15


def valid_phone(s: str) -> bool:
    """7-15 digits (extension aside) that ``phonenumbers`` finds possible for a likely region."""
    main = re.split(r"(?i)\s?(?:x|ext\.?|extension|#)\s?\d+$", s)[0]
    d = digits(main)
    if not 7 <= len(d) <= 15:
        return False
    text = main.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    for region in ("US", "FR", "DE", "CA", "GB", "NL", "ES", "IT", "PT", "BR"):
        try:
            num = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number(num):
            return True
    return False


def strong_phone_format(s: str) -> bool:
    """A phone written like one (international prefix, area code in parentheses, extension, grouped digits)."""
    t = s.strip()
    if t.startswith(("+", "00")) or re.search(r"\(\d{1,5}\)", t) or re.search(r"(?i)(?:x|ext\.?)\s?\d+$", t):
        return True
    if re.fullmatch(r"1?[ \-.]?\d{3}([\-. ])\d{3}\1\d{4}", t):
        return True
    return bool(re.fullmatch(r"0\d(?:[ .]\d{2}){4}", t))


def valid_date(s: str) -> bool:
    """A real calendar date in the past 120 years (day-first or month-first numeric, ISO, or written month)."""
    nums = [int(x) for x in re.findall(r"\d+", s)]
    if len(nums) == 3:
        a, b, c = nums
        candidates = [(a, b, c), (c, b, a), (c, a, b)] if a > 31 else [(c, b, a), (c, a, b)]
        for y, m, d in candidates:
            if y < 100:
                y += 1900 if y > 30 else 2000
            try:
                day = dt.date(y, m, d)
            except ValueError:
                continue
            return 1900 <= day.year <= dt.date.today().year
        return False
    years = [n for n in nums if n > 1000]
    return bool(years) and 1900 <= years[0] <= dt.date.today().year


def adult_birth_date(s: str, min_age_years: int = 14) -> bool:
    """A valid date at least ``min_age_years`` ago: an uncued date that could be the birth date of the person
    writing or named ("start date 2021-03-01" is not)."""
    if not valid_date(s):
        return False
    years = [int(x) for x in re.findall(r"\d+", s) if len(x) == 4]
    if not years:
        two = re.findall(r"\d+", s)[-1]
        years = [int(two) + (1900 if int(two) > 30 else 2000)] if len(two) == 2 else []
    return bool(years) and years[0] <= dt.date.today().year - min_age_years
