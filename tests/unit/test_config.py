"""`config/kommuner.toml`: what a data engineer gets wrong gets a clear error naming the entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from transforms.core.config import ConfigError, load_kommuner

SYSTEM = """
[[kommune.epj]]
system = "{system}"
format = "epj-a-csv"
path = "raw/epj/{nr}-{system}"
active_from = "2015-01-01"
"""


def config(tmp_path: Path, *entries: tuple[str, list[str]]) -> Path:
    text = "".join(f'[[kommune]]\nnr = "{nr}"\n' + "".join(SYSTEM.format(nr=nr, system=s) for s in systems)
                   for nr, systems in entries)
    path = tmp_path / "kommuner.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_distinct_system_ids_load(tmp_path: Path) -> None:
    loaded = load_kommuner(config(tmp_path, ("0301", ["gerica_0301"]), ("1103", ["gerica_1103", "profil_1103"])))
    assert [(m.nr, [s.system for s in m.epj]) for m in loaded] == [
        ("0301", ["gerica_0301"]), ("1103", ["gerica_1103", "profil_1103"])]


def test_a_system_id_shared_by_two_municipalities_is_refused(tmp_path: Path) -> None:
    """Record ids are `epj:<system>:<service id>`: a shared id would mix two municipalities' services."""
    with pytest.raises(ConfigError, match=r"\[\[kommune\]\] #2 \[\[kommune.epj\]\] #1: system 'gerica' is already "
                                          r"the id of an EPJ system of kommune 0301.*'gerica_1103'"):
        load_kommuner(config(tmp_path, ("0301", ["gerica"]), ("1103", ["gerica"])))


def test_a_system_id_twice_in_one_municipality_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="system 'profil' is already the id of an EPJ system of kommune 1103"):
        load_kommuner(config(tmp_path, ("1103", ["profil", "profil"])))


def test_an_edited_file_is_read_anew(tmp_path: Path) -> None:
    """The parsed configuration is cached by content: an edit (even of the same size) is seen at once."""
    path = config(tmp_path, ("0301", ["epj_a"]))
    assert load_kommuner(path)[0].epj[0].system == "epj_a"
    path.write_text(path.read_text().replace("epj_a", "epj_b"), encoding="utf-8")
    assert load_kommuner(path)[0].epj[0].system == "epj_b"


SHARED = """
[[kommune]]
nr = "1508"
[[kommune.epj]]
system = "epj_a"
format = "epj-b-jsonl"
path = "raw/epj/1508-epj_a"
active_from = "2015-01-01"

[[kommune]]
nr = "1580"
[[kommune.shared_epj]]
system = "{system}"
{kommuner}
active_to = "2023-12-31"
"""


def test_a_shared_export_is_the_holders_system_for_the_units_named(tmp_path: Path) -> None:
    path = tmp_path / "kommuner.toml"
    path.write_text(SHARED.format(system="epj_a", kommuner='kommuner = ["1507"]'), encoding="utf-8")
    alesund, haram = load_kommuner(path)
    (shared,) = haram.shared_epj
    assert (shared.system, shared.path, shared.format, shared.kommuner) == ("epj_a", "raw/epj/1508-epj_a",
                                                                            "epj-b-jsonl", ("1507",))
    assert str(shared.active_from) == "2015-01-01" and str(shared.active_to) == "2023-12-31"
    assert haram.epj == () and [s.system for s in haram.systems()] == ["epj_a"] and alesund.shared_epj == ()


@pytest.mark.parametrize(("system", "kommuner", "message"), [
    ("epj_x", 'kommuner = ["1507"]', "must be an EPJ system another municipality configures"),
    ("epj_a", "", "kommuner is required"),
])
def test_a_shared_export_must_name_a_held_system_and_its_units(tmp_path: Path, system, kommuner, message) -> None:
    path = tmp_path / "kommuner.toml"
    path.write_text(SHARED.format(system=system, kommuner=kommuner), encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_kommuner(path)
