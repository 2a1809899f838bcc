"""Courtesy and academic titles (en/de/fr) as evidence that the words after them are a person's name.

spaCy finds names by shape (capitalised proper nouns): a name typed in lower case ("bitte dr. hanns stahr unter
... zurückrufen") is never one. After a title the words are a name whatever their case: ``Dr.``, ``Prof.``,
``Dipl.-Ing.``, ``Ing.``, ``Mag.``, ``Mr``, ``Mrs``, ``Ms``, ``Mme``, ``M.``, ``Herr``, ``Frau``, ``Madame``,
``Monsieur``. Whether such a name is *personal data* is still decided by the detector's context rules (next to
other personal data, right after a person cue); a title alone makes no request personal (``Mr. John Kirk
borrowed $3,000`` is a benchmark character). Since 2026-11-28 (docs/sovereignty.md, "Generalisation rules").

In lower case only the abbreviations written with their full stop count (``dr.``, ``prof.``, ``dipl.-ing.``,
``mme.``); ``herr``/``frau``/``m.`` in lower case are ordinary words ("der herr", "m. 5 tasks").
"""

from __future__ import annotations

import re

from spacy.lang.de.stop_words import STOP_WORDS as _DE_STOP
from spacy.lang.en.stop_words import STOP_WORDS as _EN_STOP
from spacy.lang.fr.stop_words import STOP_WORDS as _FR_STOP

# one title, as it stands before a name (capitalised text); "Dr. med.", "Dr. rer. nat." take their faculty
_TITLE_WORD = (r"(?:(?:Mr|Mrs|Ms|Mx|Dr|Prof|Mme|Mlle)\.?|Univ\.[ -]?Prof\.|Dipl\.-\w+\.?|Ing\.|Mag\.|M\.|Herr|Frau|"
              r"Madame|Monsieur)(?:\s(?:med|phil|jur|rer\.\s?nat|h\.\s?c)\.)?")
# in lower case: the abbreviations with their full stop only
_LOWER_TITLE_WORD = (r"(?:mr|mrs|ms|mx|dr|prof|mme|mlle|ing|mag|univ\.[ -]?prof|dipl\.-[a-zäöü]+)\."
                     r"(?:\s(?:med|phil|jur)\.)?")

_UPPER_NAME = r"[A-ZÀ-ÖØ-Þ][a-zß-öø-ÿ'’]+(?:-[A-ZÀ-ÖØ-Þ][a-zß-öø-ÿ'’]+)*"
_LOWER_NAME = r"[a-zß-öø-ÿ][a-zß-öø-ÿ'’]+(?:-[a-zß-öø-ÿ][a-zß-öø-ÿ'’]+)*"
_PARTICLE = r"(?:von|van|de|du|des|der|den|le|la|zu|di|da|del|dos|ten|ter)"

# between a person cue and a titled name: punctuation, then the title(s) in either case ("patient: dr. ")
_GAP = re.compile(rf"[\s:,\-–\"'=]{{0,6}}(?:(?:{_TITLE_WORD}|{_LOWER_TITLE_WORD})\s+)+")
# one or more titles, then up to three name words (particles between them): the name is group 1
_UPPER = re.compile(
    rf"(?<![\w.-])(?:{_TITLE_WORD}\s+)+({_UPPER_NAME}(?:[ \-](?:{_PARTICLE} )*{_UPPER_NAME}){{0,2}})")
_LOWER = re.compile(
    rf"(?<![\w.-])(?:{_LOWER_TITLE_WORD}\s+)+({_LOWER_NAME}(?:[ \-](?:{_PARTICLE} )*{_LOWER_NAME}){{0,2}})")

# a name ends before the first function word of en/de/fr (spaCy's lists, no model needed)
_STOP = frozenset(_EN_STOP | _DE_STOP | _FR_STOP)
# capitalised words that follow a title without being a name ("Dr. Please", "Mr. Monday")
_NOT_A_NAME = frozenset({"the", "please", "question", "answer", "task", "monday", "tuesday", "wednesday", "thursday",
                         "friday", "saturday", "sunday", "bitte", "merci", "note", "subject"})


def _name_words(text: str, start: int, end: int) -> tuple[int, int]:
    """The end of the name in ``text[start:end]`` (up to its first function word: "hanns stahr unter" ->
    "hanns stahr") and its count of words that are not particles (0: no name)."""
    count, last_end = 0, start
    for w in re.finditer(r"\S+", text[start:end]):
        word = w.group(0)
        low = word.lower()
        if re.fullmatch(_PARTICLE, word):
            continue
        if low in _STOP or low in _NOT_A_NAME:
            break
        count += 1
        last_end = start + w.end()
    return last_end, count


def titled_names(text: str) -> list[tuple[int, int, int]]:
    """Names introduced by a title: ``(start, end, words)`` of the name (the title excluded), ``words`` the count
    of its words that are not particles. Capitalised after a capitalised title, any case after a lower-case
    abbreviation written with its full stop."""
    out: list[tuple[int, int, int]] = []
    for rx in (_UPPER, _LOWER):
        for m in rx.finditer(text):
            end, words = _name_words(text, m.start(1), m.end(1))
            if words:
                out.append((m.start(1), end, words))
    return out


def title_gap(gap: str) -> bool:
    """``gap`` (the text between a person cue and a titled name) is punctuation and the title(s) only."""
    return _GAP.fullmatch(gap) is not None


__all__ = ["title_gap", "titled_names"]
