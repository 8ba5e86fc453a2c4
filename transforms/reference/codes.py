"""The code lists shipped with the package, each file read here and nowhere else.

- `tjenestetype-9151.csv`: IPLOS service types (code list 9151), with 12 and 13 of layout 3.6;
- `person-id-type-9032.csv`: person identifier types (code list 9032);
- `funksjonsvariabler.csv`: the 17 function variables, numbered in layout 3.6, named in 3.7.

Readers validate against these, the charts label with them; a second parser of the same file
would let the two drift apart when a code is added.
"""

from __future__ import annotations

from functools import cache

from transforms.reference.files import reference_rows


@cache
def service_names() -> dict[str, str]:
    """Code list 9151: service code -> its Norwegian name (12 and 13, layout 3.6 only, included)."""
    return {row["code"]: row["text"] for row in reference_rows("tjenestetype-9151.csv")}


@cache
def service_codes() -> frozenset[str]:
    """The codes of list 9151, including 12 and 13 (valid in layout 3.6 only)."""
    return frozenset(service_names())


@cache
def person_id_types() -> dict[int, str]:
    """Code list 9032: identifier type -> its name."""
    return {int(row["code"]): row["text"] for row in reference_rows("person-id-type-9032.csv")}


@cache
def function_variables() -> dict[int, str]:
    """Function variable number (layout 3.6) -> its layout 3.7 name."""
    return {int(row["n"]): row["name_3_7"] for row in reference_rows("funksjonsvariabler.csv")}
