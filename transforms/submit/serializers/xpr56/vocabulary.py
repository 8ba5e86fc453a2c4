"""The format's vocabulary: namespace and version, the code lists, and the forms of values.

Why a module of its own: the rules (`rules`), the model's attribute values (`attributes`), the schema's
issue locations (`schema`) and the bulk renderer's prefilter (`batch`) all judge values by these same
lists and forms; declared once here, the four cannot drift apart.
"""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

from lxml import etree

NAMESPACE = "http://www.npr.no/xmlstds/56_0_0_ipl"
VERSION = "56.0.0"
MESSAGE_TYPE = "K"  # code list 7371: message for continuous updates
OSLO = ZoneInfo("Europe/Oslo")

# Code list 9151 IPLOS tjenestetype, all 25 codes of the schema (XPR(ipl)_CodingSchemes.xsd), in its
# order. The requirement document asks for 18, 19, 20, 21 and 29 "in the first round" and for a
# solution that is easy to extend; the schema allows all of them. 12 and 13 (IPLOS layout 3.6) are
# not codes of this list: they are reported as 29.
TJENESTETYPE_9151: dict[str, str] = {
    "1": "Praktisk bistand - daglige gjøremål",
    "2": "Praktisk bistand - opplæring - daglige gjøremål",
    "3": "Praktisk bistand - brukerstyrt - personlig assistanse",
    "4": "Dagaktivitetstilbud",
    "5": "Matombringing",
    "15": "Helsetjenester i hjemmet",
    "7": "Avlastning utenfor institusjon",
    "9": "Støttekontakt",
    "11": "Omsorgsstønad",
    "29": "Bolig som kommunen disponerer for helse- og omsorgsformål",
    "18": "Tidsbegrenset opphold - utredning/behandling",
    "19": "Tidsbegrenset opphold - habilitering/rehabilitering",
    "20": "Tidsbegrenset opphold - annet",
    "8": "Avlastning i institusjon",
    "17": "Dagopphold i institusjon",
    "22": "Nattopphold i institusjon",
    "21": "Langtidsopphold i institusjon",
    "25": "Kommunal øyeblikkelig hjelp - døgnopphold",
    "23": "Skadeavvergende tiltak i nødssituasjoner",
    "14": "Planlagte tiltak",
    "24": "Helsehjelp med tvang",
    "6": "Trygghetsalarm",
    "26": "Lokaliseringsteknologi (GPS)",
    "27": "Elektronisk medisineringsstøtte",
    "28": "Digitalt tilsyn",
}

# Code list 9032 Type personidentifikasjon. Only 1, 2 and 10 give the person a registry id; the others
# pass the schema and are reported back as a shortcoming.
PERSON_ID_TYPE_9032: dict[str, str] = {
    "1": "Norsk fødselsnummer",
    "2": "D-nummer",
    "3": "H-nummer",
    "4": "Passnummer",
    "5": "Svensk personnummer",
    "6": "Dansk personnummer",
    "7": "Sosial security number",
    "8": "Forsikringspolise nummer",
    "9": "Annet",
    "10": "DUF-nummer",
    "12": "Felles hjelpenummer (FH-nummer)",
}

# Code list 8471 Kontaktperson type.
CONTACT_TYPE_8471: dict[str, str] = {
    "1": "Teknisk produksjon",
    "2": "Somatisk spesialisthelsetjeneste",
    "3": "Psykisk helsevern voksne",
    "4": "Barne og ungdomspsykiatri",
    "5": "Tverrfaglig spesialisert rusbehandling",
    "6": "Personskadestatistikk",
    "7": "Ventelistestatistikk",
    "8": "Ident-meldingen",
    "9": "RESH",
    "10": "Radiologi",
    "11": "Stråleterapi",
    "12": "Pakkeforløp kreft",
    "13": "Vedtak etter psykisk helsevernloven",
    "14": "Organisasjonsoppsett i EPJ",
    "15": "EPJ-leverandør, meldingsvalidering",
    "16": "IPLOS kontaktperson",
    "17": "IPLOS innsendingsansvarlig",
    "18": "Helsestasjons- og skolehelsetjeneste",
    "19": "Kostnad per pasient (KPP)",
}
# "For IPLOS: every municipality has at least one 16 IPLOS contact and one 17 responsible for submission."
REQUIRED_CONTACT_TYPES = ("16", "17")

# Code list 7316 Status notifikasjon: T (KorrigerSuppler) is in the list but "not to be used yet".
STATUS_7316: dict[str, str] = {"N": "Original", "M": "KorrigerErstatt", "C": "KorrigerAnnuller"}

MAX_TEXT = 100  # the document's "string max 100 characters" on names, versions, brukerNr

GUID_FORM = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
                       r"|\{[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}")
DATE_FORM = re.compile(r"\d{4}-\d{2}-\d{2}")
# what xs:date / xs:dateTime accept (the schema reports anything else itself)
XSD_DATE_LIKE = re.compile(r"-?\d{4,}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?")
TIMESTAMP_FORM = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")
LOPENR_FORM = re.compile(r"[1-9][0-9]*")
ORGNR_FORM = re.compile(r"\d{9}")
KOMMUNENR_FORM = re.compile(r"\d{4}")
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

# Modulus-11 weights of a fødselsnummer's or D-nummer's two check digits (positions 9 and 10)
BIRTH_NUMBER_WEIGHTS: tuple[tuple[tuple[int, ...], int], ...] = (((3, 7, 6, 1, 8, 9, 4, 5, 2), 9),
                                                                 ((5, 4, 3, 2, 7, 6, 5, 4, 3, 2), 10))


def qualified(local: str) -> str:
    """An element's name in the format's namespace, as lxml spells it (`{namespace}Melding`)."""
    return f"{{{NAMESPACE}}}{local}"


def local_name(element: etree._Element) -> str:
    """An element's name without its namespace ("" for a comment or processing instruction)."""
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


def sequence_no(value: str | None) -> int | None:
    """A `notifikasjonLopeNr` as a number, None when absent or not a positive integer."""
    return int(value) if value is not None and LOPENR_FORM.fullmatch(value) else None
