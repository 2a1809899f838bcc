"""Presidio recognizers for the workload's personal-data types (English, German, French).

- :class:`IdentifierRecognizer`: numeric and alphanumeric identifiers (IBAN, card, US SSN, Canadian SIN, Ontario
  and Quebec health cards, passport, date of birth, phone, and the national identification numbers of
  ``national_ids``: Brazilian CPF, Dutch BSN, Spanish DNI/NIE, Italian codice fiscale, French NIR, Polish PESEL,
  German IdNr, Belgian national number, UK NINO, Portuguese NIF, Swiss AHV, Austrian SVNR).
  Shape + checksum (``formats``, ``national_ids``) + the nearest cue word before the match (``cues``) decide; an
  innocent cue (order, ISBN, ticket, Rechnung, facture, ...) vetoes.
- :class:`EmailRecognizer`, :class:`AddressRecognizer`: patterns (US, Canadian, military, German and French
  street + postcode lines).
- :class:`ProperNameRecognizer`: runs of two or more capitalised tokens that spaCy tags as proper nouns or as a
  person entity (PERSON / PER). Whether a name is *personal data* is decided by the detector (a name next to
  another identifier or a person cue is; a character of a benchmark task is not).

Scores: 1.0 for checksum-validated or cue-confirmed matches; the detector keeps results >= 0.5.
"""

from __future__ import annotations

import re

from presidio_analyzer import EntityRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from spacy.tokens import Token

from sovrouter.detect import formats as f
from sovrouter.detect import national_ids as _n
from sovrouter.detect.cues import (
    CASED_CUES,
    CUE_ALSO,
    INNOCENT_CUES,
    PERSON_CUES,
    TYPE_CUES,
    WEAK_PERSON_CUES,
    cue_regex,
)
from sovrouter.detect.national_ids import NATIONAL_CTX_ID_TYPES, NATIONAL_ID_TYPES, IdMatch, national_ids

WINDOW = 60  # characters before a match in which its cue must stand

# national ids after the others but before PHONE: "numéro 2 95 10 99 126 111 93" is a NIR, not a phone number
IDENTIFIER_TYPES = ("IBAN", "CREDIT_CARD", "CA_HEALTH_CARD", "US_SSN", "CA_SIN", "PASSPORT", "DATE_OF_BIRTH",
                    *NATIONAL_ID_TYPES, "PHONE")
WEAK_DOB = "DATE_OF_BIRTH~weak"  # a date after a narrative cue ("born"): personal data only next to other data
# An identifier of a personal format with no cue at all ("Jane Roe 078-05-1120"): personal data only in a short
# line that also holds a person's name or other personal data (decided by the detector). ``~id`` ones are
# specific enough to make a neighbouring name count; ``~ctx`` ones (dates, bare phone numbers) are not.
CTX = "~ctx"
CTX_ID = "~id"
_CTX_ID_TYPES = ("US_SSN", "CA_SIN", "CA_HEALTH_CARD", "PASSPORT", *NATIONAL_CTX_ID_TYPES)
CONTEXT_TYPES = (*(t + CTX_ID for t in _CTX_ID_TYPES), "DATE_OF_BIRTH" + CTX, "PHONE" + CTX)
_PRIORITY = {t: i for i, t in enumerate((*IDENTIFIER_TYPES, WEAK_DOB, *CONTEXT_TYPES))}
_PASSPORT_SHAPE = re.compile(r"[A-Z]{1,2}\d{6,8}|\d{9}")
_BIRTH_AFTER = re.compile(r"\W{0,3}(?:\w+\W+){0,2}?(?:geboren|born|née?)\b", re.I)
# a call verb after the number, as German puts it at the end of the clause ("bitte unter 03494 22617
# zurückrufen", "unter 0171 2345678 telefonisch erreichbar"), or a call-back phrase ("... 0171 2345678 to call me
# back"): the number is a phone number as if the cue stood before it (2026-11-28). Only pronouns and adverbs of
# calling between them ("Ziel von 1000000 Euro ist erreichbar" is no phone number).
_CALL_AFTER = re.compile(
    r"[\s,;:)]{1,3}(?:(?:bitte|gerne?|jederzeit|telefonisch|tagsüber|vormittags|nachmittags|abends|mich|uns|ihn|sie|"
    r"ihr|mir|to|please|pour|me|le|la|svp)\s+){0,2}"
    r"(?:zurückrufen|zurückzurufen|anrufen|anzurufen|erreichbar|rückruf\w*|call(?:ing)?\s+(?:me\s+|us\s+)?back|"
    r"callback|rappeler|rappelez|joignable)\b", re.I)


_Cand = IdMatch  # every identifier candidate, national ids included (``context_ok`` applies to ``_CTX_ID_TYPES``)


_COMPOUND_TAIL = re.compile(r"-?(?:nummer|nr\.?)$")


def _keys(text: str) -> str:
    """``date_of_birth``, ``phone_number``, ``health_card`` as field names carry their cue words (same length:
    positions unchanged; 2026-11-28)."""
    return text.replace("_", " ")


class CueIndex:
    """Cue words found in one text, each with its category (a type, ``INNOCENT`` or ``PERSON``)."""

    def __init__(self) -> None:
        words: dict[str, str] = {}
        for typ, ws in TYPE_CUES.items():
            for w in ws:
                words.setdefault(w.lower(), typ)
        for w in INNOCENT_CUES:
            words.setdefault(w.lower(), "INNOCENT")
        self._category = words
        self._re = cue_regex(tuple(words))
        # the other categories' words, looked for again inside a national id's name: "numéro national",
        # "nationaal nummer", "SV-Nummer" hold the phone cues "numéro" and "nummer", which the longer name took
        # from the phone number after it (since 2026-11-28, found in review); the name speaks for its own shapes
        # only (``_speaks_for``), the word inside it for the rest
        self._inner = cue_regex(tuple(w for w, typ in words.items() if typ not in NATIONAL_ID_TYPES))
        self._cased_category = {w: typ for typ, ws in CASED_CUES.items() for w in ws}
        self._cased = cue_regex(tuple(self._cased_category), ignore_case=False)
        self._person = cue_regex(PERSON_CUES)

    def find(self, text: str) -> list[tuple[int, int, str]]:
        text = _keys(text)
        found = [(m.start(), m.end(), self._category_of(m.group(0))) for m in self._re.finditer(text)]
        cased = [(m.start(), m.end(), self._cased_category[_COMPOUND_TAIL.sub("", m.group(0))])
                 for m in self._cased.finditer(text)]
        inner = [(m.start(), m.end(), self._category_of(m.group(0)))
                 for s, e, cat in found if cat in NATIONAL_ID_TYPES for m in self._inner.finditer(text, s, e)]
        extra = cased + inner
        # by end, a name after the word inside it: the nearest cue that speaks for a number is the last one
        return sorted(found + extra, key=lambda c: (c[1], -c[0])) if extra else found

    def _category_of(self, word: str) -> str:
        w = word.lower()
        return self._category.get(w) or self._category[_COMPOUND_TAIL.sub("", w)]

    def has_person_cue(self, text: str) -> bool:
        return self._person.search(text) is not None

    def person_cue_ends(self, text: str) -> list[int]:
        return [m.end() for m in self._person.finditer(_keys(text))]

    def person_cue_spans(self, text: str) -> list[tuple[int, int]]:
        return [(m.start(), m.end()) for m in self._person.finditer(_keys(text))]


def _candidates(text: str) -> list[_Cand]:
    out: list[_Cand] = []
    for m in f.IBAN_RE.finditer(text):
        iban = f.valid_iban(m.group(0))
        if iban is not None:
            # map the compact IBAN back onto the text span
            n, end = 0, m.start()
            while n < len(iban) and end < len(text):
                if text[end] not in " -./":
                    n += 1
                end += 1
            out.append(_Cand("IBAN", m.start(), end, True))
    for m in (*f.CARD_RE.finditer(text), *f.CARD_DOT_RE.finditer(text)):
        if f.valid_card(m.group(0)):
            out.append(_Cand("CREDIT_CARD", m.start(), m.end(), f.card_self_evident(m.group(0))))
    for m in f.RAMQ_RE.finditer(text):
        if f.valid_ramq(m.group(0)):
            # four letters + a valid birth month/day in the digits: the RAMQ shape is specific on its own
            out.append(_Cand("CA_HEALTH_CARD", m.start(), m.end(), " " in m.group(0)))
    for m in f.ONTARIO_HC_RE.finditer(text):
        out.append(_Cand("CA_HEALTH_CARD", m.start(), m.end(), False))
    for m in f.SSN_RE.finditer(text):
        if f.valid_ssn(m.group(0)):
            out.append(_Cand("US_SSN", m.start(), m.end(), False))
    for m in f.SIN_RE.finditer(text):
        if f.valid_sin(m.group(0)):
            out.append(_Cand("CA_SIN", m.start(), m.end(), False))
    for m in f.PASSPORT_RE.finditer(text):
        out.append(_Cand("PASSPORT", m.start(), m.end(), False))
    out += national_ids(text)
    for m in f.DATE_RE.finditer(text):
        if f.valid_date(m.group(0)):
            out.append(_Cand("DATE_OF_BIRTH", m.start(), m.end(), False))
    for m in f.PHONE_RE.finditer(text):
        s = m.group(0).rstrip(" .-/(")
        if f.valid_phone(s):
            out.append(_Cand("PHONE", m.start(), m.start() + len(s), f.strong_phone_format(s)))
        elif f.phone_digits_ok(s):  # implausible for phonenumbers: only right after a phone cue
            out.append(_Cand("PHONE", m.start(), m.start() + len(s), False))
    return out


_SELF_EVIDENT_OK = ("PERSON", "DATE_OF_BIRTH~weak", "DATE_OF_BIRTH", "PASSPORT", "US_SSN", "CA_SIN",
                    "CA_HEALTH_CARD", "PHONE", "CREDIT_CARD", "IBAN", *NATIONAL_ID_TYPES)


def _cue_fits(cue: str | None, typ: str) -> bool:
    """The nearest cue names this type (or a category that also confirms it: ``cues.CUE_ALSO``)."""
    return cue is not None and (cue == typ or typ in CUE_ALSO.get(cue, ()))


# the shapes a national id's cue word speaks for (its own, and those of ``CUE_ALSO``'s national types)
_NATIONAL_SHAPES: dict[str, re.Pattern[str]] = {
    "BR_CPF": _n.CPF_RE, "NL_BSN": _n.BSN_RE, "ES_NIF": _n.DNI_RE, "ES_NIE": _n.NIE_RE,
    "IT_FISCAL_CODE": _n.FISCAL_CODE_RE, "FR_NIR": _n.NIR_RE, "PL_PESEL": _n.PESEL_RE,
    "DE_TAX_ID": _n.DE_TAX_ID_RE, "BE_NRN": _n.BE_NRN_RE, "UK_NINO": _n.NINO_RE, "PT_NIF": _n.PT_NIF_RE,
    "CH_AHV": _n.AHV_RE, "AT_SVNR": _n.SVNR_RE,
}


def _speaks_for(cue: str, typ: str, s: str) -> bool:
    """Whether the cue ``cue`` is about the identifier ``s`` of type ``typ``. A national id's name ("CPF", "DNI",
    "PESEL") is about a number of its own shape (valid or not), never about another type's number: "SSN/CPF
    078-05-1120", "Pasaporte/DNI: AB1234567" or "wizyta za 3 dni: 612 345 678" (Polish "days") are read as if that
    word were not there, so the cues and context rules that found them before the national ids still do."""
    if cue not in NATIONAL_ID_TYPES or _cue_fits(cue, typ):
        return True
    kinds = (cue, *(t for t in CUE_ALSO.get(cue, ()) if t in _NATIONAL_SHAPES))
    return any(_NATIONAL_SHAPES[k].fullmatch(s) is not None for k in kinds)


def _specific(typ: str, s: str) -> bool:
    """An uncued identifier shaped enough to stand for its type next to a name (grouped, not a bare number)."""
    if typ == "PASSPORT":
        return _PASSPORT_SHAPE.fullmatch(s) is not None
    if typ == "CA_HEALTH_CARD":
        return not s.isdigit()  # 4-3-3 grouped (or RAMQ); ten bare digits read better as a phone number
    return True


def decide_identifiers(text: str, cues: list[tuple[int, int, str]], context: bool = False
                       ) -> list[tuple[str, int, int]]:
    """Accepted identifier spans ``(type, start, end)``, overlaps resolved by type priority. With ``context``,
    uncued identifiers of a personal format come back too, typed ``<TYPE>~id`` / ``<TYPE>~ctx``."""
    cands = _candidates(text)
    edges = sorted({c.end for c in cands})
    accepted: list[_Cand] = []
    for c in cands:
        # the cue window starts after the previous identifier-shaped string (cues belong to the nearest one)
        prev_end = max((e for e in edges if e <= c.start), default=0)
        lo = max(prev_end, c.start - WINDOW, text.rfind("\n", 0, c.start) + 1)
        nearest = None
        other = None  # the nearest cue that is not the name of another type's national id
        for cs, ce, cat in cues:
            if cs >= lo and ce <= c.start and _speaks_for(cat, c.type, text[c.start:c.end]):
                nearest = cat
                if cat not in NATIONAL_ID_TYPES or _cue_fits(cat, c.type):
                    other = cat
        if other is not None:  # "passport no. / BSN: 123456789": the passport cue stays in charge
            nearest = other
        # a self-evident format (valid IBAN, scheme card number, ...) stands unless an innocent cue is nearest
        if _cue_fits(nearest, c.type) or (c.self_evident and nearest in (None, *_SELF_EVIDENT_OK)):
            accepted.append(c)
        elif (c.type == "PHONE" and nearest is None and _CALL_AFTER.match(text, c.end)
              and f.valid_phone(text[c.start:c.end]) and not f.DATE_RE.fullmatch(text[c.start:c.end])):
            accepted.append(c)  # "bitte unter 03494 22617 zurückrufen"
        elif c.type == "DATE_OF_BIRTH" and nearest is None and _BIRTH_AFTER.match(text, c.end):
            accepted.append(_Cand(WEAK_DOB, c.start, c.end, False))  # "ist am 13.02.1991 geboren"
        elif c.type == "DATE_OF_BIRTH" and nearest == "DATE_OF_BIRTH~weak":
            # "born 12/27/1954" reads like a record; "born on January 1, 1990" like a story
            numeric = re.fullmatch(r"[\d/.\-]+", text[c.start:c.end]) is not None
            accepted.append(c if numeric else _Cand(WEAK_DOB, c.start, c.end, False))
        elif not context:
            continue
        elif (nearest is None and c.type in _CTX_ID_TYPES and c.context_ok
              and _specific(c.type, text[c.start:c.end])):
            accepted.append(_Cand(c.type + CTX_ID, c.start, c.end, False))
        elif nearest is None and ((c.type == "DATE_OF_BIRTH" and f.adult_birth_date(text[c.start:c.end])) or (
                c.type == "PHONE" and f.valid_phone(text[c.start:c.end])
                and not f.DATE_RE.fullmatch(text[c.start:c.end]))):
            accepted.append(_Cand(c.type + CTX, c.start, c.end, False))
    accepted.sort(key=lambda c: (_PRIORITY[c.type], -(c.end - c.start)))
    kept: list[_Cand] = []
    for c in accepted:
        if all(c.end <= k.start or c.start >= k.end for k in kept):
            kept.append(c)
    return [(c.type, c.start, c.end) for c in sorted(kept, key=lambda c: c.start)]


class IdentifierRecognizer(EntityRecognizer):
    def __init__(self, cues: CueIndex, language: str = "en") -> None:
        self._cues = cues
        super().__init__(supported_entities=[*IDENTIFIER_TYPES, WEAK_DOB, *CONTEXT_TYPES],
                         name="sovrouter_identifiers",
                         supported_language=language)

    def load(self) -> None:
        return None

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
                ) -> list[RecognizerResult]:
        found = decide_identifiers(text, self._cues.find(text), context=True)
        return [RecognizerResult(t, s, e, 1.0 if "~" not in t else 0.6) for t, s, e in found if t in entities]




class EmailRecognizer(EntityRecognizer):
    def __init__(self, language: str = "en") -> None:
        super().__init__(supported_entities=["EMAIL"], name="sovrouter_email", supported_language=language)

    def load(self) -> None:
        return None

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
                ) -> list[RecognizerResult]:
        out = []
        code = f.FIXTURE.search(text) is not None  # only a test fixture's quoted address is a code literal
        for m in f.EMAIL.finditer(text):
            if f.RESERVED_MAIL.search(m.group(0)):
                continue
            if code and m.start() > 0 and text[m.start() - 1] in "'\"":
                continue  # a string literal in a code snippet (test fixture), not someone's mailbox
            out.append(RecognizerResult("EMAIL", m.start(), m.end(), 1.0))
        return out


_ADDRESS_CUE = re.compile(
    r"(?i)\b(?:address|addr\.|ship(?:ped)? to|mail(?:ing)? to|resid\w*|lives at|anschrift|adresse|wohnhaft|"
    r"wohnt|domicil\w*|demeurant|habite)\b"
)


class AddressRecognizer(EntityRecognizer):
    def __init__(self, language: str = "en") -> None:
        super().__init__(supported_entities=["ADDRESS"], name="sovrouter_address", supported_language=language)

    def load(self) -> None:
        return None

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
                ) -> list[RecognizerResult]:
        out = []
        for rx in (f.US_ADDRESS, f.CA_ADDRESS, f.MILITARY_ADDRESS):
            out += [RecognizerResult("ADDRESS", m.start(), m.end(), 1.0) for m in rx.finditer(text)]
        cue = _ADDRESS_CUE.search(text) is not None
        for m in f.EU_ADDRESS.finditer(text):
            street = m.group(0).rsplit(",", 1)[0]
            if cue or f.STREET_WORDS.search(street):
                out.append(RecognizerResult("ADDRESS", m.start(), m.end(), 1.0 if cue else 0.8))
        return out


_PARTICLES = {"von", "van", "de", "du", "des", "der", "le", "la", "auch", "zu", "del", "di", "da", "d'", "dos",
              "ten", "ter", "den", "mc", "st."}
# capitalised words that open a line before a name ("Für Achim Karge:", "Pour Jean Roy"): never its first word
_LEADING_NOT_NAME = frozenset(_PARTICLES | {w for w in WEAK_PERSON_CUES if " " not in w} | {"bitte", "merci", "please"})
_NOT_NAMES = re.compile(
    r"(?i)^(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|please|question|answer|task|below|the|dear|"
    r"hello|hi|note|"
    r"street|avenue|road|suite|apt|box|iban|bic|swift|email|e-mail|phone|tel|fax|card|passport|ssn|sin|dob|"
    r"kyc|re|fw|fwd|subject|mr|mrs|ms|dr|herr|frau|mme|monsieur|madame)$"
)


_NAME_WORD = re.compile(
    r"^[A-ZÀ-ÖØ-Þ][a-zß-öø-ÿ'’]*(?:[A-ZÀ-ÖØ-Þ][a-zß-öø-ÿ'’]+)?(?:-[A-ZÀ-ÖØ-Þ][a-zß-öø-ÿ'’]+)*$"
)


_INITIAL = re.compile(r"[A-ZÀ-ÖØ-Þ]\.")


class ProperNameRecognizer(EntityRecognizer):
    """PERSON candidates: runs of >= 2 capitalised words with spaCy support (PROPN tag or PERSON/PER entity)."""

    def __init__(self, cues: CueIndex, language: str = "en") -> None:
        self._cues = cues
        super().__init__(supported_entities=["PERSON"], name="sovrouter_names", supported_language=language)

    def load(self) -> None:
        return None

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
                ) -> list[RecognizerResult]:
        if nlp_artifacts is None or "PERSON" not in entities:
            return []
        person_chars: set[int] = set()
        for ent in nlp_artifacts.entities:
            if ent.label_ in ("PERSON", "PER"):
                person_chars.update(range(ent.start_char, ent.end_char))
        cue_chars: set[int] = set()
        for s, e in self._cues.person_cue_spans(text):
            cue_chars.update(range(s, e))
        out: list[RecognizerResult] = []
        run: list[Token] = []

        def flush() -> None:
            while run and (run[0].is_stop or run[0].text == "-" or run[0].text.lower() in _LEADING_NOT_NAME):
                run.pop(0)  # "When Lauren", "If Brinley": a capitalised function word is not part of a name
            words = [t for t in run if t.text != "-" and t.text.lower() not in _PARTICLES
                     and not _INITIAL.fullmatch(t.text)]
            if len(words) >= 2 and any(t.pos_ == "PROPN" or t.idx in person_chars for t in words):
                score = 0.95 if any(t.idx in person_chars for t in words) else 0.85  # NER agrees: 0.95
                out.append(RecognizerResult("PERSON", run[0].idx, run[-1].idx + len(run[-1].text), score))
            run.clear()

        tokens = list(nlp_artifacts.tokens)
        for i, tok in enumerate(tokens):
            word = tok.text
            after = tokens[i + 1].text if i + 1 < len(tokens) else ""
            shaped = len(word) > 1 and _NAME_WORD.match(word) is not None and not _NOT_NAMES.match(word)
            # a cue word is a surname where NER reads it as the end of a person's name after a name word
            # ("Michael Holder 078-05-1120", "Anna Kunde"); before another name word it is the cue ("Member Jane")
            surname = (bool(run) and run[-1].idx in person_chars and tok.idx in person_chars
                       and _NAME_WORD.match(run[-1].text) is not None and _NAME_WORD.match(after) is None)
            name_like = shaped and (tok.idx not in cue_chars or surname)
            # a middle initial between name words ("Hans D. Bauer", "Klaus-D. Austermühle"); never a name's first
            # word ("D. Larry Joe" is an answer option)
            initial = bool(run) and _INITIAL.fullmatch(word) is not None and _NAME_WORD.match(after) is not None
            joiner = bool(run) and (word == "-" or word.lower() in _PARTICLES or initial)
            if name_like or joiner:
                run.append(tok)
            else:
                flush()
        flush()
        return out
