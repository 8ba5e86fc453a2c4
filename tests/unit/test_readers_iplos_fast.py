"""The xml2arrow column collector (`iplos_fast`) gives the lxml collector's batches, or steps aside.

Each guard has a file on which xml2arrow alone would give another answer than lxml (another value, line,
record or outcome): the fast reader must fall back for the stated reason, and what `batches` gives must be
what `iter_batches` (lxml) gives, frame for frame, with the same raw text for every record."""

from pathlib import Path

import pytest
from lxml import etree

from tests.conftest import EXAMPLE_ROOT
from tests.unit.test_readers_iplos import FID, bruker, doc37, make_sink, tjeneste
from tests.unit.test_readers_iplos_small import _outputs
from transforms.ingest.readers import iplos_fast
from transforms.ingest.readers.base import FileRejected, ReadContext
from transforms.ingest.readers.iplos_collect import Header, iter_batches, root_layout
from transforms.ingest.readers.iplos_xml import batches, read_iplos_file
from transforms.synthetic.ids import birth_number, break_check_digits

FRAMES = ("persons", "services", "stops", "assessments", "scores", "diagnoses")
KINDS = (("person", "persons"), ("service", "services"), ("stop", "stops"), ("assessment", "assessments"),
         ("diagnosis", "diagnoses"))
PAD = "\n" * 70_000  # pushes what follows past line 65535, where libxml2 asks a neighbour for an element's line


def _collect(reader, path: Path, size: int):
    """(header, [(frames, raw texts)]) or the rejection; raw texts taken before the next batch is read."""
    layout, header, out = root_layout(path), Header(), []
    try:
        for batch in reader(path, layout, header, lambda: None, size):
            texts = {kind: [etree.tostring(batch.element(kind, n), encoding="unicode", with_tail=False)
                            for n in range(getattr(batch, frame).height)]
                     for kind, frame in KINDS if batch.tags.get(kind, "x")}
            out.append(({n: getattr(batch, n) for n in FRAMES}, texts))
    except FileRejected as exc:
        return repr(exc)
    return header, out


def assert_same(path: Path, size: int = 20_000, fast: str | None = "fast") -> None:
    """`batches` gives what lxml gives; `fast`: the fast reader's outcome ('fast' or a fallback reason)."""
    before = iplos_fast.FALLBACKS.copy()
    got = _collect(batches, path, size)
    outcome = dict(iplos_fast.FALLBACKS - before)
    expected = _collect(iter_batches, path, size)
    if isinstance(expected, str) or isinstance(got, str):
        assert got == expected
    else:
        assert got[0] == expected[0], "header"
        assert len(got[1]) == len(expected[1]), "batches"
        for (frames, texts), (want_frames, want_texts) in zip(got[1], expected[1], strict=True):
            for name in FRAMES:
                assert frames[name].schema == want_frames[name].schema, name
                assert frames[name].equals(want_frames[name]), (name, frames[name], want_frames[name])
            assert texts == want_texts, "raw text"
    if fast is not None:  # after the comparison: a guard's test fails on the answer, not only on the reason
        assert outcome == {fast: 1}


def _write(tmp_path: Path, text: str | bytes, encoding: str = "iso-8859-1") -> Path:
    path = tmp_path / "x.xml"
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def doc36(persons: str, pad: str = "") -> str:
    return ('<?xml version="1.0" encoding="ISO-8859-1"?>\n<IPLOS versjon="3.6">\n'
            '  <Hode><Aar>2018</Aar><Kommunenr>0602</Kommunenr><Uttaksdato>09.01.2019</Uttaksdato></Hode>'
            f'{pad}\n{persons}</IPLOS>\n')


def person36(fnr: str = FID, brukernr: str = "c-1", more: str = "") -> str:
    return (f"  <Person>\n    <Brukernr>{brukernr}</Brukernr><Fnr>{fnr}</Fnr><Kjonn>2</Kjonn><Fodt>1923</Fodt>"
            "<Dod></Dod>\n    <Husstand>1</Husstand>\n"
            '    <Vurdering dato="23.03.2018"><V n="1">1</V><V n="2">3</V></Vurdering>\n'
            "    <Tjeneste><Kode>3</Kode><Fra>16.01.2005</Fra><Til></Til><OrgNr>934035976</OrgNr>"
            f"<Timer>23,0</Timer></Tjeneste>\n{more}  </Person>\n")


def funksjon(date: str = "2019-03-01", scores: tuple[str, ...] = ("hukommelse", "syn")) -> str:
    inner = "".join(f'<Variabel navn="{n}" verdi="2"/>\n' for n in scores)
    return f'<Funksjonsvurdering dato="{date}">\n{inner}</Funksjonsvurdering>\n'


def rich_person(n: int, bad: bool = False) -> str:
    """A 3.7 person with services (one with two stops), an assessment and a diagnosis."""
    fid = birth_number(n % 28 + 1, n % 12 + 1, 40 + n % 50)
    stops = ('<MidlertidigStopp stoppID="S-1" fraDato="2019-02-01" tilDato="2019-02-10"/>\n'
             '<MidlertidigStopp stoppID="S-2" fraDato="2019-03-01" tilDato="2019-01-10"/>\n')
    diagnosis = '<Diagnose system="ICD10" kode="F10" dato="2003-02-13"/>\n'
    services = (tjeneste(f"T-{n}a", stops=stops) + funksjon() + diagnosis +
                tjeneste(f"T-{n}b", code="99" if n % 3 == 0 else "15"))
    return bruker(break_check_digits(fid) if bad else fid, services, user_no=str(n))


# --- the fast reader reads these, and gives lxml's batches ----------------------------------------------
@pytest.mark.parametrize("year", [2018, 2019])
@pytest.mark.parametrize("size", [1, 20_000])
def test_spec_examples(year, size):
    assert_same(EXAMPLE_ROOT / f"raw/iplos/{year}/0602.xml", size)


@pytest.mark.parametrize("pad", ["", PAD])
def test_layout_37_every_record_kind_in_batches(tmp_path, pad):
    """Several batches, quarantined people and records among them, lines past 65535 (`pad`)."""
    body = pad + "".join(rich_person(n, bad=n % 4 == 1) for n in range(1, 12))
    assert_same(_write(tmp_path, doc37(body)), size=3)


@pytest.mark.parametrize("pad", ["", PAD])
def test_layout_36_lines_past_65535(tmp_path, pad):
    """Compact 3.6 services (`<Tjeneste><Kode>`): past line 65535 their line is that of the child's text."""
    persons = "".join(person36(birth_number(3, 4, 50 + n), f"c-{n}") for n in range(5))
    assert_same(_write(tmp_path, doc36(persons, pad)), size=2)


def test_latin1_values_are_transcoded(tmp_path):
    assert_same(_write(tmp_path, doc37(bruker(FID, tjeneste("Tæ-1"), user_no="Ø-1"))))


def test_quarantine_and_counts_as_with_lxml(tmp_path, monkeypatch):
    """Staged rows, quarantine (raw text from the lazily found elements) and counts, fast or not."""
    path = _write(tmp_path, doc37(PAD + "".join(rich_person(n, bad=n % 4 == 1) for n in range(1, 12))))
    outputs = []
    for fast in ("1", "0"):
        monkeypatch.setenv("KTT_IPLOS_FAST", fast)
        root = tmp_path / f"fast{fast}"
        sink = make_sink(root)
        read_iplos_file(path, sink, ReadContext(True, year=2019, unit="0602"))
        sink.commit()
        outputs.append(_outputs(root))
    assert outputs[0]["quarantine"].height > 10
    for name in outputs[1]:
        frames = [o[name].drop("source_file", strict=False) for o in outputs]
        assert frames[0].equals(frames[1]), name


# --- guards: xml2arrow alone would answer otherwise ----------------------------------------------------
def test_not_well_formed(tmp_path):
    """xml2arrow reads an unclosed document; lxml rejects it, with its message."""
    assert_same(_write(tmp_path, doc37(bruker(FID, tjeneste())).replace("</IplosMelding>", "")),
                fast="not_well_formed")


def test_two_roots(tmp_path):
    text = doc37("\n" * 200_000 + bruker(FID, tjeneste()))  # past what `root_layout` reads
    assert_same(_write(tmp_path, text + '<IplosMelding versjon="3.7"/>\n'), fast="not_well_formed")


def test_processing_instruction_in_a_text(tmp_path):
    """lxml's text ends at the instruction; xml2arrow's goes on."""
    assert_same(_write(tmp_path, doc36(person36(brukernr="c-1<?pi x?>2"))), fast="bytes")


def test_carriage_return_in_a_text(tmp_path):
    """libxml2 turns CR LF into LF; xml2arrow keeps the CR."""
    assert_same(_write(tmp_path, doc36(person36(brukernr="c-1\r\n"))), fast="bytes")


def test_greater_than_in_an_attribute_of_a_long_start_tag(tmp_path):
    """A `>` inside a value would end the start tag early for the byte scan: the line would be wrong."""
    body = bruker(FID, tjeneste()).replace('brukerNr="1"', 'brukerNr="a>b"\n')
    assert_same(_write(tmp_path, doc37(body)), fast="bytes")


def test_person_in_another_namespace(tmp_path):
    """xml2arrow matches names without their namespace; lxml's reader takes only the layout's."""
    other = bruker(FID, tjeneste()).replace("<Bruker ", '<Bruker xmlns="other" ')
    assert_same(_write(tmp_path, doc37(bruker(FID, tjeneste()) + other)), fast="bytes")


def test_prefixed_field_child(tmp_path):
    """An undeclared prefix is only a namespace warning to libxml2: lxml's reader does not see `x:Husstand`,
    xml2arrow (names without prefixes) reads its code."""
    body = bruker(FID, tjeneste()).replace('<Husstand kode="1"/>', '<x:Husstand kode="2"/>')
    assert_same(_write(tmp_path, doc37(body)), fast="bytes")


def test_processing_instruction_first_child_past_65535(tmp_path):
    """Past line 65535 a person's line comes from its first child: here an instruction, not an element."""
    body = bruker(FID, tjeneste()).replace('dodsdato="">\n', 'dodsdato=""><?pi x?>\n')
    assert_same(_write(tmp_path, doc37(PAD + body)), fast="bytes")


def test_comment_first_child_past_65535(tmp_path):
    """A removed comment leaves the text after it as the person's first child."""
    body = bruker(FID, tjeneste()).replace('dodsdato="">\n', 'dodsdato=""><!-- c -->\n')
    assert_same(_write(tmp_path, doc37(PAD + body)), fast="bytes")


def test_reference_falls_back(tmp_path):
    assert_same(_write(tmp_path, doc37(bruker(FID, tjeneste("T&#45;1")))), fast="bytes")


def test_comment_falls_back(tmp_path):
    assert_same(_write(tmp_path, doc37("<!-- <Bruker> -->\n" + bruker(FID, tjeneste()))), fast="bytes")


def test_other_declared_encoding(tmp_path):
    """Windows-1252's 0x80 is the euro sign, not ISO-8859-1's control character."""
    text = doc37(bruker(FID, tjeneste("T-€"))).replace("ISO-8859-1", "windows-1252")
    assert_same(_write(tmp_path, text, encoding="cp1252"), fast="encoding")


def test_person_elsewhere_in_the_tree(tmp_path):
    """lxml's reader takes a person wherever it is; xml2arrow only where the layout puts persons."""
    body = bruker(FID, tjeneste("T-1")) + "<Gruppe>\n" + bruker(FID, tjeneste("T-2"), user_no="2") + "</Gruppe>\n"
    assert_same(_write(tmp_path, doc37(body)), fast="structure")


def test_service_elsewhere_in_the_tree(tmp_path):
    body = bruker(FID, tjeneste("T-1") + funksjon().replace("</Funksjonsvurdering>",
                                                            tjeneste("T-2") + "</Funksjonsvurdering>"))
    assert_same(_write(tmp_path, doc37(body)), fast="structure")


def test_field_child_twice(tmp_path):
    """lxml reads the first `Husstand` (no code); xml2arrow the one with a value."""
    body = bruker(FID, tjeneste()).replace('<Husstand kode="1"/>', '<Husstand/>\n<Husstand kode="2"/>')
    assert_same(_write(tmp_path, doc37(body)), fast="structure")


def test_text_field_with_a_child_element(tmp_path):
    """lxml's `text` ends at the first child; xml2arrow joins the texts around it."""
    assert_same(_write(tmp_path, doc36(person36(brukernr="c-1<b/>2"))), fast="structure")


def test_assessment_without_scores_beside_one_with(tmp_path):
    body = bruker(FID, tjeneste() + funksjon("2019-01-01", ()) + funksjon("2019-02-01"))
    assert_same(_write(tmp_path, doc37(body)), fast="structure")


def test_two_person_containers(tmp_path):
    text = doc37(bruker(FID, tjeneste() + funksjon()))
    text = text.replace("</Kommune>", '</Kommune>\n<Kommune kommuneNr="0602">\n' + bruker(FID, funksjon()) +
                        "</Kommune>")
    assert_same(_write(tmp_path, text), fast="structure")


def test_line_from_the_previous_sibling(tmp_path):
    """Past line 65535 an empty last record takes its line from its previous sibling: not followed here."""
    body = bruker(FID, tjeneste()).replace('">\n</Tjeneste>\n</Bruker>', '"/></Bruker>')
    body = body.replace('<Husstand kode="1"/>\n', '<Husstand kode="1"/>')
    assert_same(_write(tmp_path, doc37(PAD + body)), fast="lines")


def test_empty_person_past_65535(tmp_path):
    """An empty person's line (past 65535) depends on how far lxml had parsed when it handed it over."""
    body = bruker(FID, tjeneste()) + f'<Bruker brukerNr="2" fid="{FID}" typeID="1" kjonn="2" fodselsar="1947"/>\n'
    assert_same(_write(tmp_path, doc37(PAD + body)), fast="lines")


def test_size_bound(tmp_path, monkeypatch):
    monkeypatch.setattr(iplos_fast, "FAST_MAX_BYTES", 100)
    assert_same(_write(tmp_path, doc37(bruker(FID, tjeneste()))), fast="size")


def test_no_person(tmp_path):
    assert_same(_write(tmp_path, doc37("")), fast="no_person")


def test_misfiled_rejected_as_by_lxml(tmp_path):
    path = _write(tmp_path, doc37(bruker(FID, tjeneste()), unit="0301"))
    with pytest.raises(FileRejected, match="filed under 0602"):
        read_iplos_file(path, make_sink(tmp_path), ReadContext(True, year=2019, unit="0602"))


def test_disabled(tmp_path, monkeypatch):
    monkeypatch.setenv("KTT_IPLOS_FAST", "0")
    layout = root_layout(EXAMPLE_ROOT / "raw/iplos/2019/0602.xml")
    assert iplos_fast.fast_batches(EXAMPLE_ROOT / "raw/iplos/2019/0602.xml", layout, Header(), lambda: None,
                                   10) is None
