"""Declarative mappings of the yearly IPLOS layouts 3.6 and 3.7.

A path is `@attr` (attribute of the element), `Child` (text of a child element) or
`Child/@attr`. Plugging in the real 3.7 schema later means writing one more
`XmlLayout`, not touching the reader or the reconstruction.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class XmlLayout:
    version: str
    namespace: str | None
    root: str
    date_format: str
    decimal_comma: bool
    # where the header fields are: (element, path) pairs, element None = root
    year: tuple[str | None, str]
    unit: tuple[str | None, str]
    extract_date: tuple[str | None, str]
    person: str
    person_fields: dict[str, str]
    service: str
    service_fields: dict[str, str]
    stop: str | None
    stop_fields: dict[str, str]
    assessment: str
    assessment_date: str
    score: str  # child element holding one score
    score_variable: str  # path of the variable's name/number on the score element
    score_value: str  # path of the value on the score element
    score_variable_is_number: bool
    diagnosis: str | None
    diagnosis_fields: dict[str, str]
    # the elements between the root and the persons (as the files are laid out; the lxml reader takes a
    # person element wherever it is, the fast reader of `iplos_fast` checks that each is here)
    person_parent: tuple[str, ...] = ()

    def q(self, tag: str) -> str:
        """Qualified tag name as lxml reports it."""
        return f"{{{self.namespace}}}{tag}" if self.namespace else tag


IPLOS_37 = XmlLayout(
    version="3.7",
    namespace="urn:no:iplos:aarsmelding:3.7",
    root="IplosMelding",
    date_format="%Y-%m-%d",
    decimal_comma=False,
    year=(None, "@aar"),
    unit=("Kommune", "@kommuneNr"),
    extract_date=(None, "@uttakDato"),
    person="Bruker",
    person_fields={
        "user_no": "@brukerNr", "fid": "@fid", "id_type": "@typeID", "sex": "@kjonn",
        "birth_year": "@fodselsar", "district": "@bydel", "death_date": "@dodsdato",
        "household": "Husstand/@kode",
    },
    service="Tjeneste",
    service_fields={
        "service_id": "@tjenesteID", "service_code": "@tjenesteType", "decision_date": "@vedtaksDato",
        "start_date": "@startDato", "end_date": "@sluttDato", "provider_org": "@tjenesteOrgNr",
        "hours_per_week": "@timerPerUke",
    },
    stop="MidlertidigStopp",
    stop_fields={"stop_id": "@stoppID", "from_date": "@fraDato", "to_date": "@tilDato"},
    assessment="Funksjonsvurdering",
    assessment_date="@dato",
    score="Variabel",
    score_variable="@navn",
    score_value="@verdi",
    score_variable_is_number=False,
    diagnosis="Diagnose",
    diagnosis_fields={"system": "@system", "code": "@kode", "diagnosis_date": "@dato"},
    person_parent=("Kommune",),
)

IPLOS_36 = XmlLayout(
    version="3.6",
    namespace=None,
    root="IPLOS",
    date_format="%d.%m.%Y",
    decimal_comma=True,
    year=("Hode", "Aar"),
    unit=("Hode", "Kommunenr"),
    extract_date=("Hode", "Uttaksdato"),
    person="Person",
    person_fields={
        "user_no": "Brukernr", "fid": "Fnr", "sex": "Kjonn", "birth_year": "Fodt",
        "death_date": "Dod", "household": "Husstand",
    },
    service="Tjeneste",
    service_fields={
        "service_code": "Kode", "start_date": "Fra", "end_date": "Til", "provider_org": "OrgNr",
        "hours_per_week": "Timer",
    },
    stop=None,
    stop_fields={},
    assessment="Vurdering",
    assessment_date="@dato",
    score="V",
    score_variable="@n",
    score_value=".",
    score_variable_is_number=True,
    diagnosis=None,
    diagnosis_fields={},
)

LAYOUTS: tuple[XmlLayout, ...] = (IPLOS_37, IPLOS_36)


def layout_for_root(tag: str) -> XmlLayout | None:
    for layout in LAYOUTS:
        if tag == layout.q(layout.root):
            return layout
    return None
