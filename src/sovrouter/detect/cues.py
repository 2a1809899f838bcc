"""Context words (English, German, French; since 2026-11-28 the commonest ones in Dutch, Spanish, Italian and
Portuguese too, and the names of national identification numbers: CPF, BSN, DNI/NIE, codice fiscale, NIR, PESEL,
Steuer-ID, rijksregisternummer, NI number, contribuinte, AHV, SVNR) that tell what an identifier-shaped string is.

The detector decides the type of an identifier-shaped match by the *nearest* cue before it on the same line:
a cue of a personal-data type (``"SSN"``, ``"passeport"``, ``"geb."``) makes it that type (if its format and
checksum fit), a cue of an innocent identifier (``"order"``, ``"ISBN"``, ``"Rechnung"``) makes it innocent, and
no cue leaves only the formats that are self-evident (IBAN, e-mail, card numbers with a valid issuer prefix and
Luhn digit, ...). The lists are general vocabulary of each domain, not the workload's sentence templates.
"""

from __future__ import annotations

import re

# type -> cue words/phrases (matched case-insensitively on word boundaries)
TYPE_CUES: dict[str, tuple[str, ...]] = {
    "US_SSN": ("ssn", "ss#", "ss no", "social security", "soc. sec", "soc sec", "ssa number",
               "sozialversicherungsnummer", "numéro de sécurité sociale"),
    "CA_SIN": ("sin", "sin#", "sin no", "social insurance", "nas", "assurance sociale"),
    "CA_HEALTH_CARD": (
        "health card", "health number", "health insurance number", "health card number", "ohip", "ramq", "hcn",
        "carte d'assurance maladie", "carte d’assurance maladie", "assurance maladie", "carte santé",
        "carte soleil", "numéro d'assurance maladie", "healthcard", "health-card",
    ),
    "PASSPORT": (
        "passport", "passport no", "passport number", "passport #", "reisepass", "reisepass-nr", "pass-nr",
        "passnummer", "reisepassnummer", "passeport", "passeport n°", "travel document", "document de voyage",
    ),
    # form-like cues: a date right after them is a date of birth on its own
    "DATE_OF_BIRTH": (
        "dob", "d.o.b", "d.o.b.", "date of birth", "birth date", "birthdate", "b.", "geb.", "geb", "geburtsdatum",
        "geboren am", "né(e)", "né(e) le", "né le", "née le", "date de naissance", "naissance", "ddn",
        "geboortedatum", "geboren op", "fecha de nacimiento", "data di nascita", "nato il", "nata il",
        "data de nascimento", "nascido em", "nascida em",
    ),
    # narrative cues ("Lauren was born on January 1, 1990" in a maths problem): only next to other personal data
    "DATE_OF_BIRTH~weak": ("born", "born on", "birthday", "geboren", "geburtstag", "né", "née", "birth"),
    "PHONE": (
        "phone", "phone number", "tel", "tel.", "tél", "tél.", "telephone", "téléphone", "telefon", "mobile",
        "mobil", "handy", "cell", "cellphone", "call", "callback", "call back", "called", "voicemail", "fax",
        "reach", "text", "sms", "whatsapp", "contact", "rückruf", "anrufen", "erreichbar", "portable",
        "rappeler", "joindre", "appeler", "appelez", "numéro", "nummer", "rufnummer", "festnetz", "telephone no",
        "ph", "ph.", "mob", "mob.", "cel", "gsm", "rappelez", "anruf", "zurückrufen",
        "telefoon", "telefoonnummer", "mobiel", "mobiele", "teléfono", "móvil", "celular", "telefono", "cellulare",
        "telefone", "telemóvel", "telemovel",
    ),
    "CREDIT_CARD": (
        "card", "credit card", "debit card", "card number", "visa", "mastercard", "amex", "american express",
        "discover", "jcb", "diners", "paid with", "kreditkarte", "karte", "karten", "carte", "carte bancaire",
        "carte de crédit", "cc",
    ),
    # national identification numbers (detect/national_ids.py), in their own languages and in English
    "BR_CPF": ("cpf", "c.p.f.", "cpf/mf", "cadastro de pessoas físicas", "cadastro de pessoa física",
               "cadastro de pessoas fisicas", "cadastro de pessoa fisica", "brazilian tax id"),
    "NL_BSN": ("bsn", "burgerservicenummer", "burgerservice-nummer", "sofinummer", "sofi-nummer",
               "citizen service number"),
    "ES_NIF": ("dni", "d.n.i.", "nif", "n.i.f.", "documento nacional de identidad", "número de identificación fiscal",
               "numero de identificacion fiscal"),
    "ES_NIE": ("n.i.e.", "número de identidad de extranjero", "número de identificación de extranjero",
               "numero de identidad de extranjero", "numero de identificacion de extranjero"),
    "IT_FISCAL_CODE": ("codice fiscale", "cod. fiscale", "cod. fisc.", "c.f.", "fiscal code", "tessera sanitaria"),
    "FR_NIR": ("n° de sécurité sociale", "n° sécurité sociale", "no de sécurité sociale", "sécurité sociale",
               "numéro de sécu", "n° de sécu", "n° sécu", "numéro insee", "carte vitale", "french social security"),
    "PL_PESEL": ("pesel", "numer pesel", "nr pesel"),
    # since 2026-11-28 ("tax id" speaks only for an IdNr's shape, recognizers._speaks_for, not a US EIN's). A word
    # that another cue holds after a hyphen or space ("Steuer-Identifikationsnummer", "numéro de registre national",
    # "número de contribuinte") or before "-Nr."/"nummer" ("AHV-Nummer", "Rijksregisternr.") is not listed again: each
    # alternative costs every segment's cue search
    "DE_TAX_ID": ("steuer-id", "steuerid", "steuer id", "steuerliche id", "idnr", "identifikationsnummer",
                  "steueridentifikationsnummer", "tax id", "tax identification number"),
    "BE_NRN": ("rijksregister", "nationaal nummer", "insz", "registre national", "numéro national", "n° national",
               "niss", "nationalregister", "national register", "belgian national number"),
    "UK_NINO": ("national insurance", "ni number", "ni no", "n.i. number", "ni#"),
    "PT_NIF": ("contribuinte", "identificação fiscal", "identificacao fiscal", "portuguese tax number"),
    "CH_AHV": ("ahv", "ahvn13", "avs"),
    "AT_SVNR": ("svnr", "sv-nr", "sv-nummer", "versicherungsnummer"),
}

# Cues matched in upper case only: in lower case they are common words or names of other languages (German and
# Polish "nie": never / not; "Nir", "Nino": first names).
CASED_CUES: dict[str, tuple[str, ...]] = {"ES_NIE": ("NIE",), "FR_NIR": ("NIR",), "UK_NINO": ("NINO",)}

# A cue category that also confirms other types: the shapes tell them apart ("numéro de sécurité sociale" before
# 9 digits is a US SSN, before a 15-digit NIR a French one; a DNI cue before an X/Y/Z number is its NIE; "NIF" is
# Portugal's word too, for 9 digits; "Sozialversicherungsnummer"/"social security" before a Swiss or Austrian
# number is theirs). No cue names "a national id" in general: it would take the next identifier of every other
# shape from the uncued context rules (a passport-shaped number next to a name) and confirm none of them.
CUE_ALSO: dict[str, tuple[str, ...]] = {
    "US_SSN": ("FR_NIR", "CH_AHV", "AT_SVNR"),
    "FR_NIR": ("US_SSN",),
    "ES_NIF": ("ES_NIE", "PT_NIF"),
    "ES_NIE": ("ES_NIF",),
}

# Innocent identifiers: a match whose nearest cue is one of these is not personal data.
INNOCENT_CUES: tuple[str, ...] = (
    "order", "order no", "order #", "invoice", "po", "purchase order", "ticket", "build", "case", "ref",
    "reference", "tracking", "tracking number", "shipment", "parcel", "package", "container", "seal", "booking",
    "sku", "ean", "upc", "gtin", "isbn", "issn", "doi", "part", "part no", "lot", "batch", "serial",
    "serial number", "asset", "tag", "rack", "firmware", "version", "model", "product", "product code", "item",
    "article", "cost centre", "cost center", "account code", "job", "run", "issue", "bug", "commit", "release",
    "patent", "claim no", "policy no", "transaction", "receipt", "confirmation", "page", "isin", "vin",
    "bestellnummer", "bestellung", "rechnung", "rechnungsnummer", "artikelnummer", "artikel", "sendungsnummer",
    "kostenstelle", "auftrag", "auftragsnummer", "lieferschein", "vorgang", "commande", "facture", "référence",
    "numéro de suivi", "suivi", "colis", "centre de coût", "article n°", "produit", "lot n°",
    # the languages of the national ids' cues (an order or invoice number may take a national id's shape)
    "pedido", "encomenda", "factura", "fatura", "bestelling", "bestelnummer", "factuur",
    "ordine", "fattura", "zamówienie", "zamówienia", "faktura",
)

# Words near a name that make it a real person's name in a request (not a character of a benchmark task).
PERSON_CUES: tuple[str, ...] = (
    "customer", "client", "patient", "applicant", "employee", "caller", "requester", "requested by",
    "account holder", "holder", "traveler", "traveller", "passenger", "member", "sender", "message from",
    "request from", "on behalf of", "beneficiary", "guest", "resident", "subscriber", "user",
    "opened by", "submitted by", "requested by", "name", "full name", "nom", "prénom", "vorname", "nachname",
    "name des kunden", "nom du client",
    "kunde", "kundin", "kunden", "patientin", "antragsteller", "antragstellerin", "mitarbeiter",
    "mitarbeiterin", "inhaber", "inhaberin", "kontoinhaber", "kontoinhaberin", "absender", "anfrage von",
    "nachricht von", "cliente", "titulaire", "demandeur", "demandeuse", "employé",
    "employée", "expéditeur", "message de", "demande de", "de la part de",
    "patient(e)", "dossier",
    "patiënt", "patiënte", "cliënt", "klant", "naam", "paciente", "nombre", "paziente", "nome",
    # addressing a person: salutations, closings, titles, self-introductions (a name right after them is someone's)
    "dear", "hi", "hello", "hey", "regards", "best regards", "kind regards", "sincerely", "thanks", "thank you",
    "cheers", "signed", "my name is", "i am", "i'm",
    "this is", "contact person", "attn", "attn.", "attention", "to:", "from:", "cc:", "recipient", "addressee",
    "hallo", "liebe", "lieber", "sehr geehrte", "sehr geehrter", "grüße", "gruß", "viele grüße",
    "mit freundlichen grüßen", "ich heiße", "ich bin", "hier ist", "mein name ist",
    "ansprechpartner", "ansprechpartnerin", "kontaktperson", "empfänger", "empfängerin", "z. hd.", "zu händen",
    "bonjour", "cher", "chère", "cordialement", "bien à vous", "salutations",
    "je m'appelle", "je suis", "c'est", "moi c'est", "interlocuteur", "interlocutrice", "destinataire",
    "à l'attention de", "voyageur", "voyageuse", "reisende", "reisender", "bewerber", "bewerberin", "candidat",
    "candidate", "insured", "assuré", "assurée", "versicherte", "versicherter", "bénéficiaire", "owner",
    "emergency contact", "notfallkontakt", "contact d'urgence", "contact",
)

# Weaker context: a name right after these counts only in a short line and only if spaCy's NER calls it a
# person ("For Jane Roe:", "reply to Jane Roe", "rappeler Jean Dupont"); prepositions and contact verbs.
WEAK_PERSON_CUES: tuple[str, ...] = (
    "for", "from", "to", "with", "cc", "für", "an", "mit", "pour", "à", "avec", "auprès de", "call", "email",
    "e-mail", "mail", "contact", "reply to", "write to", "remind", "ask", "tell", "meet", "visit", "invite",
    "anrufen", "kontaktieren", "schreiben", "antworten", "erinnern", "appeler", "contacter", "écrire",
    "répondre à", "rappeler", "inviter", "rencontrer",
)

# Offices and honorifics of public roles: a name after them is a public figure's ("President Johnson").
PUBLIC_TITLES: tuple[str, ...] = (
    "president", "king", "queen", "prince", "princess", "emperor", "empress", "pope", "saint", "st", "senator",
    "governor", "general", "admiral", "captain", "colonel", "lord", "lady", "sir", "dame", "judge", "justice",
    "chief", "secretary", "minister", "chancellor", "prime", "sultan", "tsar", "czar", "pharaoh", "bishop",
    "cardinal", "reverend", "präsident", "präsidentin", "kanzler", "kanzlerin", "könig", "königin", "kaiser",
    "président", "présidente", "roi", "reine", "empereur", "général",
)


def cue_regex(words: tuple[str, ...], ignore_case: bool = True) -> re.Pattern[str]:
    """One alternation, longest first, bounded so that ``sin`` does not match inside ``using``."""
    alts = sorted({re.escape(w) for w in words}, key=len, reverse=True)
    # German compounds: "Rückrufnummer", "Telefon-Nr.", "Reisepassnummer" carry their cue as first part
    return re.compile(r"(?<![\w])(?:" + "|".join(alts) + r")(?:-?(?:nummer|nr\.?))?(?![\w])",
                      re.IGNORECASE if ignore_case else 0)
