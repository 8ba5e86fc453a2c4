"""The yearly-extract reader on the spec's examples and on crafted bad files."""

from pathlib import Path

import polars as pl
import pytest

from tests.conftest import EXAMPLE_ROOT
from tests.privacy import find_identifiers
from transforms.core.layout import DataRoot
from transforms.ingest.readers.base import FileRejected, ReadContext
from transforms.ingest.readers.iplos_xml import read_iplos_file
from transforms.ingest.sink import FileSink
from transforms.privacy.identity import Pseudonymizer
from transforms.synthetic.ids import birth_number, break_check_digits
from transforms.tables import QUARANTINE, TABLES

FID = "14894710005"


def make_sink(tmp_path: Path, rel: str = "raw/iplos/2019/0602.xml") -> FileSink:
    year, unit = rel.split("/")[2], rel.split("/")[3].removesuffix(".xml")
    return FileSink(DataRoot(tmp_path), rel, "iplos", {"year": year, "unit": unit}, Pseudonymizer(b"k" * 32),
                    b"v" * 32)


def staged(tmp_path: Path, table: str) -> pl.DataFrame:
    files = TABLES[table].files(tmp_path)
    return pl.concat([pl.read_parquet(f) for f in files]) if files else pl.DataFrame()


def quarantine(tmp_path: Path) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(f) for f in QUARANTINE.files(tmp_path)])


def read(tmp_path: Path, xml: str | bytes, year: int = 2019, unit: str = "0602") -> FileSink:
    path = tmp_path / "in.xml"
    path.write_bytes(xml.encode("iso-8859-1") if isinstance(xml, str) else xml)
    sink = make_sink(tmp_path, f"raw/iplos/{year}/{unit}.xml")
    read_iplos_file(path, sink, ReadContext(True, year=year, unit=unit))
    sink.commit()
    return sink


def doc37(body: str, year: int = 2019, unit: str = "0602") -> str:
    return (f'<?xml version="1.0" encoding="ISO-8859-1"?>\n'
            f'<IplosMelding xmlns="urn:no:iplos:aarsmelding:3.7" versjon="3.7" aar="{year}" '
            f'uttakDato="{year + 1}-01-13" leverandor="Leverandør AS" navnEPJ="A" versjonEPJ="1">\n'
            f'<Kommune kommuneNr="{unit}">\n{body}</Kommune>\n</IplosMelding>\n')


def bruker(fid: str, services: str, user_no: str = "1") -> str:
    return (f'<Bruker brukerNr="{user_no}" fid="{fid}" typeID="1" kjonn="2" fodselsar="1947" bydel="" '
            f'dodsdato="">\n<Husstand kode="1"/>\n{services}</Bruker>\n')


def tjeneste(sid: str = "T-1", code: str = "15", start: str = "2019-01-05", end: str = "",
             hours: str = "4.5", stops: str = "") -> str:
    return (f'<Tjeneste tjenesteID="{sid}" tjenesteType="{code}" vedtaksDato="2019-01-01" startDato="{start}" '
            f'sluttDato="{end}" tjenesteOrgNr="974760673" timerPerUke="{hours}">\n{stops}</Tjeneste>\n')


@pytest.mark.parametrize("year", [2018, 2019])
def test_spec_examples_stage_without_quarantine(tmp_path, year):
    sink = make_sink(tmp_path, f"raw/iplos/{year}/0602.xml")
    read_iplos_file(EXAMPLE_ROOT / f"raw/iplos/{year}/0602.xml", sink, ReadContext(True, year=year, unit="0602"))
    sink.commit()
    assert quarantine(tmp_path).height == 0
    services = staged(tmp_path, "iplos_services")
    if year == 2018:
        assert sorted(services["service_code"].to_list()) == ["1", "12", "15"]
        assert services["service_id"].null_count() == 3
        assert 1.5 in services["hours_per_week"].to_list()  # decimal comma
        assert staged(tmp_path, "iplos_assessments").height == 17
    else:
        assert services["service_id"].to_list() == ["A-00001", "A-00002"]
        stops = staged(tmp_path, "iplos_stops")
        assert stops["stop_id"].to_list() == ["S-7"] and stops["service_id"].to_list() == ["A-00001"]
    assert sink.records_in == sink.staged


def test_invalid_identifier_quarantines_the_person_and_all_its_records(tmp_path):
    bad = break_check_digits(FID)
    xml = doc37(bruker(bad, tjeneste(stops='<MidlertidigStopp stoppID="S" fraDato="2019-02-01" tilDato=""/>\n'))
                + bruker(FID, tjeneste("T-2"), user_no="2"))
    sink = read(tmp_path, xml)
    q = quarantine(tmp_path).sort("line")
    assert q["rule_id"].to_list() == ["id.check_digits", "id.parent_quarantined", "id.parent_quarantined"]
    assert q["record_kind"].to_list() == ["person", "service", "stop"]
    assert q["line"].to_list() == [4, 6, 7]
    assert staged(tmp_path, "iplos_services")["service_id"].to_list() == ["T-2"]
    assert all(bad not in v and FID not in v for v in q["raw_value"].to_list())
    for kind in sink.records_in:
        assert sink.records_in[kind] == sink.staged[kind] + sink.quarantined[kind]


@pytest.mark.parametrize(("service", "rule"), [
    (tjeneste(code="99"), "code.unknown_service"),
    (tjeneste(hours="170"), "hours.out_of_range"),
    (tjeneste(start="2019-05-01", end="2019-04-01"), "period.end_before_start"),
    (tjeneste(start="2019-13-45"), "date.unparseable"),
    (tjeneste(start=""), "field.missing"),
])
def test_bad_service_is_quarantined_alone(tmp_path, service, rule):
    sink = read(tmp_path, doc37(bruker(FID, service + tjeneste("T-ok"))))
    q = quarantine(tmp_path)
    assert q["rule_id"].to_list() == [rule] and q["record_kind"].to_list() == ["service"]
    assert q["line"].to_list() == [6]
    assert staged(tmp_path, "iplos_services")["service_id"].to_list() == ["T-ok"]
    assert sink.staged["person"] == 1


def test_truncated_file_is_rejected_whole(tmp_path):
    xml = doc37(bruker(FID, tjeneste()))
    with pytest.raises(FileRejected) as exc:
        read(tmp_path, xml[: len(xml) - 40])
    assert exc.value.rejection.rule_id == "file.unparseable"


def test_bytes_not_matching_declared_encoding_are_rejected_whole(tmp_path):
    xml = doc37(bruker(FID, tjeneste())).replace("ISO-8859-1", "UTF-8").encode("iso-8859-1")
    with pytest.raises(FileRejected) as exc:
        read(tmp_path, xml)
    assert exc.value.rejection.rule_id == "file.encoding_mismatch"


def test_unknown_root_and_misfiled_header(tmp_path):
    with pytest.raises(FileRejected) as exc:
        read(tmp_path, '<?xml version="1.0"?><Something/>')
    assert exc.value.rejection.rule_id == "file.unknown_layout"
    with pytest.raises(FileRejected) as exc:
        read(tmp_path, doc37(bruker(FID, tjeneste()), year=2020))
    assert exc.value.rejection.rule_id == "file.misfiled"


def test_layout_36_derives_type_and_maps_scores(tmp_path):
    d_number = birth_number(3, 4, 51, 234, d_number=True)
    xml = ('<?xml version="1.0" encoding="ISO-8859-1"?>\n<IPLOS versjon="3.6">\n'
           '<Hode><Aar>2017</Aar><Kommunenr>1601</Kommunenr><Uttaksdato>15.01.2018</Uttaksdato></Hode>\n'
           f'<Person>\n<Brukernr>7</Brukernr><Fnr>{d_number}</Fnr><Kjonn>1</Kjonn><Fodt>1951</Fodt><Dod></Dod>\n'
           '<Vurdering dato="01.03.2017"><V n="3">4</V><V n="17">9</V></Vurdering>\n'
           '<Tjeneste><Kode>13</Kode><Fra>02.05.2016</Fra><Til></Til><OrgNr></OrgNr><Timer>2,5</Timer></Tjeneste>\n'
           '</Person>\n</IPLOS>\n')
    read(tmp_path, xml, year=2017, unit="1601")
    person = staged(tmp_path, "iplos_persons").row(0, named=True)
    assert person["id_type"] == 2 and person["data_year"] == 2017 and person["unit"] == "1601"
    scores = staged(tmp_path, "iplos_assessments").sort("variable")
    assert scores["variable"].to_list() == ["horsel", "hukommelse"] and scores["score"].to_list() == [9, 4]
    service = staged(tmp_path, "iplos_services").row(0, named=True)
    assert service["service_code"] == "13" and service["hours_per_week"] == 2.5


def test_no_raw_identifier_in_any_output(tmp_path):
    bad = break_check_digits(FID)
    read(tmp_path, doc37(bruker(FID, tjeneste()) + bruker(bad, tjeneste("T-9"), user_no="2")))
    outputs = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "in.xml"]
    assert any(p.suffix == ".parquet" for p in outputs)
    assert find_identifiers(outputs, {FID, bad}) == []
