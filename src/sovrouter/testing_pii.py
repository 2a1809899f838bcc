"""Synthetic personal-data stress set: own sentence templates (en/de/fr) filled with Faker values.

Independent of the workload's dev lines: the templates below were written from scratch (not copied from dev) and
are split in two halves, ``A`` (for developing the detector) and ``B`` (held back: measured, never inspected
while tuning). Hard negatives (innocent identifiers, non-birth dates, fictional and public people, company
names) are split the same way. Used by ``bench/pii_stress.py`` and by tests. Needs the ``faker`` dev extra.

A template is ``(id, language, text)``; ``{field}`` placeholders are filled from :class:`ValueMaker`; a text
starting with ``lower:`` is lower-cased after filling. The labelled types are those of its fields.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import phonenumbers
from faker import Faker

FIELD_TYPES: dict[str, str] = {
    "name": "PERSON", "email": "EMAIL", "phone": "PHONE", "phone_intl": "PHONE", "iban": "IBAN",
    "ssn": "US_SSN", "sin": "CA_SIN", "ohc": "CA_HEALTH_CARD", "ramq": "CA_HEALTH_CARD", "passport": "PASSPORT",
    "address": "ADDRESS", "dob": "DATE_OF_BIRTH", "card": "CREDIT_CARD",
}
_CA_FIELDS = {"sin", "ohc", "ramq"}

# ----------------------------------------------------------------------------------------------- positives
POSITIVE_TEMPLATES: dict[str, list[tuple[str, str]]] = {
    "A": [
        ("en", "Note from support: {name} called about a billing error, callback number {phone}."),
        ("en", "Patient intake - {name}, DOB {dob}, OHIP {ohc}."),
        ("en", "Wire the refund to {name}, IBAN {iban}, before Friday."),
        ("en", "HR file: employee {name}, social security no. {ssn}, start date 2021-03-01."),
        ("en", "Ship the replacement to {address}."),
        ("en", "Please reply to {email} with the summary."),
        ("en", "-- {name} | {phone} | {email}"),
        ("en", "{name},{email},{phone}"),
        ("en", '{{"full_name": "{name}", "dob": "{dob}"}}'),
        ("en", "lower:contact {name} at {phone} asap"),
        ("en", "{name}"),
        ("en", "I'm writing on behalf of {name} whose passport {passport} expired."),
        ("en", "My SIN is {sin} and I moved recently."),
        ("en", "Card on file: {card}, holder {name}."),
        ("en", "{name} ({email}) asked for this."),
        ("en", "For {name}: summarise the following."),
        ("en", "From: {name} <{email}>"),
        ("en", "Charge {card} for the annual plan."),
        ("en", "Date of birth {dob}; health card {ramq}."),
        ("en", "The applicant lives at {address} and was born {dob}."),
        ("en", "Reach me on {phone_intl} after 6pm."),
        ("en", "Employee record {name}; SSN {ssn}; mobile {phone}"),
        ("en", "Forwarding this for {name}, who can be reached at {email}."),
        ("en", "{name} {ssn}"),
        ("en", "{name}, {dob}, {address}"),
        ("de", "Notiz vom Kundendienst: {name} hat angerufen, Rückrufnummer {phone}."),
        ("de", "Bitte überweisen Sie den Betrag an {name}, IBAN {iban}."),
        ("de", "Personalakte: {name}, geboren am {dob}, wohnhaft {address}."),
        ("de", "Antwort bitte an {email}."),
        ("de", "Lieferanschrift: {address}"),
        ("de", "Mit freundlichen Grüßen {name} - Tel. {phone}"),
        ("de", "{name};{email};{phone}"),
        ("de", '{{"name": "{name}", "iban": "{iban}"}}'),
        ("de", "lower:bitte {name} unter {phone} zurückrufen"),
        ("de", "{name}"),
        ("de", "Im Auftrag von {name} (Reisepassnummer {passport}) bitte ich um Prüfung."),
        ("de", "Kreditkarte {card} wurde belastet, Inhaber {name}."),
        ("de", "Patientin {name}, Geburtsdatum {dob}, Versicherung privat."),
        ("de", "Von: {name} <{email}>"),
        ("de", "Für {name}: bitte die folgende Aufgabe lösen."),
        ("de", "Erreichbar unter {phone_intl}, am besten vormittags."),
        ("de", "Der Antragsteller wohnt in {address} und ist am {dob} geboren."),
        ("de", "Bitte buchen Sie {card} für das Jahresabo ab."),
        ("de", "{name}, {email}, {phone}"),
        ("de", "Gehaltskonto: {iban}"),
        ("de", "Sehr geehrte Frau {name}, anbei die Unterlagen."),
        ("de", "Kontaktperson {name} ist per Mail an {email} erreichbar."),
        ("de", "Ausweis/Reisepass: {passport}, ausgestellt 2019"),
        ("de", "Geb. {dob} in Köln, {name}"),
        ("fr", "Note du service client : {name} a appelé, numéro de rappel {phone}."),
        ("fr", "Veuillez virer le montant à {name}, IBAN {iban}."),
        ("fr", "Dossier RH : {name}, né le {dob}, domicilié au {address}."),
        ("fr", "Merci de répondre à {email}."),
        ("fr", "Adresse de livraison : {address}"),
        ("fr", "Cordialement, {name} - tél. {phone}"),
        ("fr", "{name};{email};{phone}"),
        ("fr", '{{"nom": "{name}", "iban": "{iban}"}}'),
        ("fr", "lower:rappeler {name} au {phone} svp"),
        ("fr", "{name}"),
        ("fr", "De la part de {name} (passeport {passport}), merci de vérifier."),
        ("fr", "Carte bancaire {card} débitée, titulaire {name}."),
        ("fr", "Patiente {name}, date de naissance {dob}, RAMQ {ramq}."),
        ("fr", "De : {name} <{email}>"),
        ("fr", "Pour {name} : résoudre l'exercice suivant."),
        ("fr", "Joignable au {phone_intl} le matin."),
        ("fr", "Le demandeur habite {address}, NAS {sin}."),
        ("fr", "Débitez {card} pour l'abonnement annuel."),
        ("fr", "{name}, {email}, {phone}"),
        ("fr", "Compte de salaire : {iban}"),
        ("fr", "Madame {name}, veuillez trouver ci-joint les documents."),
        ("fr", "La personne à contacter, {name}, est joignable par courriel à {email}."),
        ("fr", "Numéro d'assurance sociale : {sin}"),
        ("fr", "Né(e) le {dob} à Lyon, {name}"),
        ("fr", "{name} {sin}"),
    ],
    "B": [
        ("en", "Hi, this is {name}. My number is {phone} if you need anything."),
        ("en", "Transfer 250 EUR from account {iban} (holder: {name}) to savings."),
        ("en", "Insured person: {name} | health card no {ohc}"),
        ("en", "Deliver to: {name}, {address}"),
        ("en", "Send the report to {name} at {email} by end of day."),
        ("en", "Candidate {name}, d.o.b. {dob}, applied for the analyst role."),
        ("en", "payment details: {card} exp 09/27"),
        ("en", "{email}"),
        ("en", "ssn={ssn};name={name}"),
        ("en", "Regards, {name}, {phone_intl}"),
        ("en", "lower:my name is {name} and my email is {email}"),
        ("en", "Please update the mailing address of {name} to {address}."),
        ("en", "Traveller {name} holds passport number {passport}."),
        ("en", "SIN {sin} - {name} - {phone}"),
        ("en", "Kindly call back {name} on {phone}"),
        ("en", "{name}, born {dob}, {address}"),
        ("en", "<customer><name>{name}</name><tel>{phone}</tel></customer>"),
        ("en", "Quebec health insurance: {ramq}, patient {name}."),
        ("en", "Can you help me draft a reply to {name}? Her email is {email}."),
        ("en", "Account owner {name} IBAN {iban} BIC DEUTDEFF"),
        ("en", "Visa, full number {card}, was charged twice."),
        ("en", "Reminder: {name}'s appointment, phone {phone}."),
        ("en", "Emergency contact: {name} {phone}"),
        ("en", "{name} {passport} {dob}"),
        ("en", "We met {name} yesterday; her home is {address}."),
        ("de", "Hallo, hier ist {name}. Meine Nummer: {phone}."),
        ("de", "Überweisung an Empfänger {name}, Konto {iban}, Verwendungszweck Miete."),
        ("de", "Versand an {name}, {address}"),
        ("de", "Schicken Sie das Ergebnis an {name} ({email})."),
        ("de", "Bewerber {name}, Geburtstag {dob}, Bewerbung als Analyst."),
        ("de", "Zahlung per Karte {card}, gültig bis 09/27"),
        ("de", "{email}"),
        ("de", "name={name}|tel={phone}"),
        ("de", "Gruß {name} {phone_intl}"),
        ("de", "lower:ich heiße {name} und meine e-mail ist {email}"),
        ("de", "Bitte die Meldeadresse von {name} auf {address} ändern."),
        ("de", "Reisende {name}, Passnr. {passport}."),
        ("de", "Rufen Sie {name} unter {phone} zurück."),
        ("de", "{name}, geb. {dob}, {address}"),
        ("de", "<kunde><name>{name}</name><telefon>{phone}</telefon></kunde>"),
        ("de", "Können Sie mir helfen, {name} zu antworten? Ihre Adresse ist {email}."),
        ("de", "Kontoinhaberin {name} IBAN {iban}"),
        ("de", "Die Karte {card} wurde doppelt belastet."),
        ("de", "Notfallkontakt: {name} {phone}"),
        ("de", "Termin für {name} am Dienstag, Telefon {phone}."),
        ("de", "{name} {passport} {dob}"),
        ("de", "Wohnhaft: {address}; Tel: {phone}"),
        ("de", "Ansprechpartner: {name}"),
        ("de", "Erstattung bitte auf {iban} (lautet auf {name})"),
        ("fr", "Bonjour, c'est {name}. Mon numéro : {phone}."),
        ("fr", "Virement au bénéficiaire {name}, compte {iban}, motif loyer."),
        ("fr", "Expédier à {name}, {address}"),
        ("fr", "Envoyez le résultat à {name} ({email})."),
        ("fr", "Candidat {name}, anniversaire {dob}, poste d'analyste."),
        ("fr", "Paiement par carte {card}, expire 09/27"),
        ("fr", "{email}"),
        ("fr", "nom={name}|tel={phone}"),
        ("fr", "Bien à vous, {name} {phone_intl}"),
        ("fr", "lower:je m'appelle {name} et mon courriel est {email}"),
        ("fr", "Merci de changer l'adresse de {name} pour {address}."),
        ("fr", "Voyageur {name}, passeport n° {passport}."),
        ("fr", "Rappelez {name} au {phone}."),
        ("fr", "{name}, née le {dob}, {address}"),
        ("fr", "<client><nom>{name}</nom><tel>{phone}</tel></client>"),
        ("fr", "Pouvez-vous m'aider à répondre à {name} ? Son adresse est {email}."),
        ("fr", "Titulaire du compte {name} IBAN {iban}"),
        ("fr", "La carte {card} a été débitée deux fois."),
        ("fr", "Contact d'urgence : {name} {phone}"),
        ("fr", "Carte d'assurance maladie du Québec {ramq} pour {name}"),
        ("fr", "{name} {passport} {dob}"),
        ("fr", "Domicile : {address} ; Tél : {phone}"),
        ("fr", "Interlocuteur : {name}"),
        ("fr", "Numéro de carte santé de l'Ontario {ohc}, patient {name}"),
        ("fr", "{name} {ohc}"),
    ],
}

# ----------------------------------------------------------------------------------------------- negatives
NEGATIVE_TEMPLATES: dict[str, list[tuple[str, str]]] = {
    "A": [
        ("en", "Order {order} shipped via UPS, tracking {tracking}."),
        ("en", "ISBN {isbn13} - please cite the second edition."),
        ("de", "Bestellnummer {order}, Rechnung {invoice}, bitte prüfen."),
        ("en", "Ticket {ticket} was reopened by the on-call team."),
        ("fr", "Référence produit {sku}, EAN {ean}."),
        ("en", "Product code {phone_like} is out of stock."),
        ("en", "The meeting moved to {date}."),
        ("en", "{first} has 3 apples and gives 1 to {first2}."),
        ("en", "{public} is often quoted in this chapter."),
        ("en", "{company} reported revenue of 3.2 billion in 2023."),
        ("fr", "Facture {invoice} du {date}, montant 1 250 EUR."),
        ("de", "ISBN-10 {isbn10} wird in Kapitel 4 zitiert."),
        ("en", "Serial number {serial} failed QA on {date}."),
        ("de", "Container {container} kommt am {date} in Hamburg an."),
        ("en", "Version 2.14.3, build {order}, released {date}."),
        ("fr", "{first} lit un livre de {public} pendant 3 heures."),
        ("de", "{company} eröffnet eine Filiale in Leipzig."),
        ("en", "SKU {sku} and EAN {ean} are listed twice in the catalogue."),
    ],
    "B": [
        ("en", "Your parcel {tracking} is out for delivery."),
        ("en", "Cite: ISBN {isbn13}."),
        ("de", "Auftragsnummer {order} vom {date}."),
        ("en", "Incident {ticket} resolved."),
        ("en", "Lot {sku} / GTIN {ean}"),
        ("en", "Model {phone_like} replaced the older unit."),
        ("fr", "Le séminaire a lieu le {date}."),
        ("fr", "{first} a 12 billes et en donne 5 à {first2}."),
        ("en", "Write a short essay on {public}."),
        ("fr", "{company} a ouvert un bureau à Montréal."),
        ("en", "PO {invoice} approved by finance on {date}."),
        ("en", "ISBN {isbn10}"),
        ("de", "Rechnung {invoice}, Kostenstelle 4711."),
        ("en", "Shipment {container} delayed until {date}."),
        ("de", "{first} kauft 4 Äpfel, {first2} kauft doppelt so viele."),
        ("en", "Quarterly results of {company} were published on {date}."),
        ("fr", "Le colis {tracking} est en cours de livraison."),
        ("de", "Ticketnummer {ticket} wurde geschlossen."),
    ],
}

PUBLIC_FIGURES = (
    "Albert Einstein", "Marie Curie", "Angela Merkel", "Victor Hugo", "Abraham Lincoln", "Johann Sebastian Bach",
    "Simone de Beauvoir", "Isaac Newton", "Ada Lovelace", "Charles de Gaulle", "Immanuel Kant", "Jane Austen",
)
_LOCALES = {"en": ("en_US", "en_CA"), "de": ("de_DE",), "fr": ("fr_FR", "fr_CA")}
_MONTHS = {
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"),
    "de": ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
           "November", "Dezember"),
    "fr": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
           "novembre", "décembre"),
}


def _ascii(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", s) if c.isascii() and c.isalpha()).upper()


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _fmt_date(rng: random.Random, d: dt.date, lang: str) -> str:
    month = _MONTHS[lang][d.month - 1]
    options = [
        d.strftime("%Y-%m-%d"), d.strftime("%d.%m.%Y"), d.strftime("%d/%m/%Y"), f"{d.day} {month} {d.year}",
    ]
    if lang == "en":
        options += [d.strftime("%m/%d/%Y"), f"{month} {d.day}, {d.year}", f"{month[:3]} {d.day} {d.year}"]
    if lang == "de":
        options += [f"{d.day}. {month} {d.year}", d.strftime("%d.%m.%y")]
    if lang == "fr":
        options += [f"{d.day:02d}-{d.month:02d}-{d.year}"]
    return rng.choice(options)


@dataclass
class ValueMaker:
    """Faker values for one language; ``seed`` makes the whole stream reproducible."""

    seed: int = 0
    _fakers: dict[str, Faker] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        for i, loc in enumerate(("en_US", "en_CA", "de_DE", "fr_FR", "fr_CA")):
            fk = Faker(loc)
            fk.seed_instance(self.seed * 10 + i)
            self._fakers[loc] = fk

    def locale_for(self, lang: str, fields: set[str]) -> str:
        if fields & _CA_FIELDS:
            return "fr_CA" if lang == "fr" else "en_CA"
        if "ssn" in fields:
            return "en_US"
        return self.rng.choice(_LOCALES[lang])

    def phone(self, fk: Faker, loc: str, intl: bool) -> str:
        raw = str(fk.phone_number())
        if not intl:
            return raw
        region = loc.split("_")[1]
        national = re.sub(r"^(?:\+1|001)[\s.\-]?", "", raw.split("x")[0]) if region in ("US", "CA") else raw
        try:
            num = phonenumbers.parse(national, region)
        except phonenumbers.NumberParseException:
            return raw
        if not phonenumbers.is_possible_number(num):
            return raw
        fmt = self.rng.choice((phonenumbers.PhoneNumberFormat.INTERNATIONAL, phonenumbers.PhoneNumberFormat.E164))
        return phonenumbers.format_number(num, fmt)

    def fill(self, lang: str, template: str) -> tuple[str, list[str]]:
        """Fill a positive template; returns the line and its sorted labelled types."""
        fields = set(re.findall(r"{(\w+)}", template))
        loc = self.locale_for(lang, fields)
        fk = self._fakers[loc]
        rng = self.rng
        first, last = str(fk.first_name()), str(fk.last_name())
        birth = fk.date_of_birth(minimum_age=18, maximum_age=90)
        vals: dict[str, Any] = {}
        vals["name"] = rng.choice((f"{first} {last}", f"{first} {last}", str(fk.name())))
        vals["email"] = str(fk.free_email() if rng.random() < 0.7 else fk.company_email())
        vals["phone"] = self.phone(fk, loc, intl=False)
        vals["phone_intl"] = self.phone(fk, loc, intl=True)
        vals["iban"] = str(fk.iban()) if rng.random() < 0.6 else " ".join(re.findall(".{1,4}", str(fk.iban())))
        vals["ssn"] = str(self._fakers["en_US"].ssn())
        vals["sin"] = str(self._fakers["en_CA"].ssn())
        sep = rng.choice(("-", " "))
        ohc = f"{_digits(rng, 4)}{sep}{_digits(rng, 3)}{sep}{_digits(rng, 3)}"
        vals["ohc"] = ohc + (f"{sep}{rng.choice('ABCDEFGHJKLMN')}{rng.choice('ABCDEFGHJKLMN')}"
                             if rng.random() < 0.5 else "")
        mm = birth.month + (50 if rng.random() < 0.5 else 0)
        vals["ramq"] = (f"{(_ascii(last) + 'XXX')[:3]}{(_ascii(first) + 'X')[0]} {birth.year % 100:02d}{mm:02d} "
                        f"{birth.day:02d}{_digits(rng, 2)}")
        vals["passport"] = str(fk.passport_number())
        vals["address"] = ", ".join(x.strip() for x in str(fk.address()).split("\n"))
        vals["dob"] = _fmt_date(rng, birth, lang)
        card = str(fk.credit_card_number(card_type=rng.choice(("visa16", "mastercard", "amex"))))
        vals["card"] = " ".join(re.findall(".{1,4}", card)) if rng.random() < 0.5 else card
        lower = template.startswith("lower:")
        line = template.removeprefix("lower:").format(**vals)
        if lower:
            line = line.lower()
        return line, sorted({FIELD_TYPES[f] for f in fields})

    def fill_negative(self, lang: str, template: str) -> str:
        loc = self.rng.choice(_LOCALES[lang])
        fk = self._fakers[loc]
        rng = self.rng
        day = dt.date(2015, 1, 1) + dt.timedelta(days=rng.randrange(4300))
        ssn_like = f"{rng.randint(100, 665)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"
        vals = {
            "order": rng.choice((_digits(rng, 9), f"ORD-{_digits(rng, 7)}", f"{_digits(rng, 3)}-{_digits(rng, 7)}")),
            "tracking": rng.choice((f"1Z{_digits(rng, 2)}{_ascii(str(fk.lexify('???')))}{_digits(rng, 10)}",
                                    _digits(rng, 22), f"JJD{_digits(rng, 18)}")),
            "isbn13": str(fk.isbn13()), "isbn10": str(fk.isbn10()), "ean": str(fk.ean13()),
            "invoice": rng.choice((f"INV-{day.year}-{_digits(rng, 5)}", _digits(rng, 8), f"RE{_digits(rng, 6)}")),
            "ticket": ssn_like, "sku": f"{_ascii(str(fk.lexify('???')))}-{_digits(rng, 5)}",
            "phone_like": f"{_digits(rng, 3)}-{_digits(rng, 3)}-{_digits(rng, 4)}",
            "serial": f"{_ascii(str(fk.lexify('??')))}{_digits(rng, 8)}",
            "container": f"{_ascii(str(fk.lexify('????')))}{_digits(rng, 7)}",
            "date": _fmt_date(rng, day, lang), "first": str(fk.first_name()), "first2": str(fk.first_name()),
            "public": rng.choice(PUBLIC_FIGURES), "company": str(fk.company()),
        }
        return template.format(**vals)


def place(task: str, line: str, position: str) -> str:
    """Put ``line`` before, after or inside (after the first paragraph or sentence of) ``task``."""
    if position == "before":
        return f"{line}\n\n{task}"
    if position == "after":
        return f"{task}\n\n{line}"
    cut = task.find("\n\n")
    if cut < 0:
        m = re.search(r"(?<=[.?!])\s", task)
        cut = m.start() if m else len(task)
    return f"{task[:cut]}\n{line}\n{task[cut:].lstrip()}"


@dataclass(frozen=True)
class StressItem:
    text: str
    types: tuple[str, ...]
    kind: str  # positive | hard_negative | plain
    split: str  # A | B
    lang: str
    position: str  # before | after | inside | none
    template: str  # e.g. "A/pos/12"
    line: str = ""  # the inserted line (empty for plain tasks)


def generate(tasks: list[str], n: int, seed: int = 0, split: str = "A", positive_share: float = 0.6,
             negative_share: float = 0.25) -> list[StressItem]:
    """``n`` items of one split: positives, hard negatives and plain tasks in the given shares."""
    vm = ValueMaker(seed=seed + (0 if split == "A" else 1000))
    rng = random.Random(seed + 7 + (0 if split == "A" else 1000))
    pos, neg = POSITIVE_TEMPLATES[split], NEGATIVE_TEMPLATES[split]
    out: list[StressItem] = []
    for i in range(n):
        task = rng.choice(tasks)
        r = rng.random()
        position = rng.choice(("before", "before", "after", "inside"))
        if r < positive_share:
            k = i % len(pos)
            lang, tpl = pos[k]
            line, types = vm.fill(lang, tpl)
            out.append(StressItem(place(task, line, position), tuple(types), "positive", split, lang, position,
                                  f"{split}/pos/{k}", line))
        elif r < positive_share + negative_share:
            k = rng.randrange(len(neg))
            lang, tpl = neg[k]
            line = vm.fill_negative(lang, tpl)
            out.append(StressItem(place(task, line, position), (), "hard_negative", split, lang, position,
                                  f"{split}/neg/{k}", line))
        else:
            out.append(StressItem(task, (), "plain", split, "benchmark", "none", f"{split}/plain"))
    return out


__all__ = ["FIELD_TYPES", "NEGATIVE_TEMPLATES", "POSITIVE_TEMPLATES", "StressItem", "ValueMaker", "generate",
           "place"]
