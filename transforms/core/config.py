"""`config/kommuner.toml`: which municipalities report, their EPJ systems and contacts."""

from __future__ import annotations

import datetime as dt
import functools
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

BUNDLED_MAPPINGS = "transforms.ingest.mappings"  # package of the source mappings that ship (`format = NAME`)


def bundled_mapping_names() -> tuple[str, ...]:
    """The bundled source mappings by name (the files of `BUNDLED_MAPPINGS`, read as data)."""
    from importlib import resources

    return tuple(sorted(p.name.removesuffix(".toml") for p in resources.files(BUNDLED_MAPPINGS).iterdir()
                        if p.name.endswith(".toml")))


class ConfigError(ValueError):
    """The configuration is wrong; the message names the file and the entry."""


@dataclass(frozen=True)
class Contact:
    name: str
    email: str
    type: int


@dataclass(frozen=True)
class EpjSystem:
    system: str
    format: str       # a bundled mapping's name, or the custom mapping's path (a label in lineage and coverage)
    path: str
    active_from: dt.date
    active_to: dt.date | None
    history_from: dt.date
    kommuner: tuple[str, ...] | None  # None: all numbers of the reporting municipality
    mapping: str = ""  # the source mapping: a bundled name, or a TOML file relative to the data root

    def holds_unit(self, unit: str) -> bool:
        return self.kommuner is None or unit in self.kommuner


@dataclass(frozen=True)
class Municipality:
    nr: str
    name: str
    vendor: str
    epj_name: str
    epj_version: str
    contacts: tuple[Contact, ...] = ()
    epj: tuple[EpjSystem, ...] = field(default_factory=tuple)
    her_id: int | None = None  # the address register's HER-id: the sender (FromHerId) of its messages
    # another municipality's exports that also hold records of this one's territory (`[[kommune.shared_epj]]`):
    # after a split, both successors took records from the divided municipality's EPJ. Read once, by its holder
    shared_epj: tuple[EpjSystem, ...] = field(default_factory=tuple)

    def systems(self) -> tuple[EpjSystem, ...]:
        """Its own exports and the shared ones: every system whose records may be this municipality's."""
        return self.epj + self.shared_epj


def _date(value, where: str, name: str, required: bool = True) -> dt.date | None:
    if value is None:
        if required:
            raise ConfigError(f"{where}: {name} is required")
        return None
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"{where}: {name} = {value!r} is not an ISO date") from None


def load_kommuner(path: Path) -> list[Municipality]:
    """The municipalities of `path`, parsed once per content of the file.

    A national configuration takes ~0.13 s to parse, and every timeline batch asks for it several
    times: 7.6 s of a national build went to parsing the same file. The cache key is the file's
    content, so an edited file is always read anew.
    """
    if not path.exists():
        raise ConfigError(f"{path}: not found; every data root needs config/kommuner.toml (see docs/inputs.md)")
    return list(_parse_kommuner(str(path), path.read_bytes()))


@functools.lru_cache(maxsize=16)  # a handful of data roots per process
def _parse_kommuner(path_name: str, raw: bytes) -> tuple[Municipality, ...]:
    return tuple(_read_kommuner(Path(path_name), raw))


def _read_kommuner(path: Path, raw: bytes) -> list[Municipality]:
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    result = []
    system_owner: dict[str, str] = {}
    for i, entry in enumerate(data.get("kommune", []), start=1):
        where = f"{path} [[kommune]] #{i}"
        nr = str(entry.get("nr", ""))
        if not (len(nr) == 4 and nr.isdigit()):
            raise ConfigError(f"{where}: nr {nr!r} must be a four-digit kommunenummer")
        her_id = entry.get("her_id")
        if her_id is not None and (isinstance(her_id, bool) or not isinstance(her_id, int) or her_id <= 0):
            raise ConfigError(f"{where}: her_id {her_id!r} must be a positive whole number (the HER-id)")
        systems = []
        for j, sys_entry in enumerate(entry.get("epj", []), start=1):
            swhere = f"{where} [[kommune.epj]] #{j}"
            fmt, mapping = sys_entry.get("format"), sys_entry.get("mapping")
            if (fmt is None) == (mapping is None):
                raise ConfigError(f"{swhere}: give either format = \"<bundled mapping>\" (one of "
                                  f"{', '.join(bundled_mapping_names())}) or mapping = \"config/sources/<name>.toml\"")
            if fmt is not None and fmt not in bundled_mapping_names():
                raise ConfigError(f"{swhere}: format {fmt!r} is not a bundled mapping (one of "
                                  f"{', '.join(bundled_mapping_names())}); a custom export needs "
                                  "mapping = \"config/sources/<name>.toml\" (docs/source-mappings.md)")
            if mapping is not None and not (isinstance(mapping, str) and mapping.endswith(".toml")):
                raise ConfigError(f"{swhere}: mapping {mapping!r} must be the path of a .toml file, relative to "
                                  "the data root (e.g. config/sources/gerica.toml)")
            for key in ("system", "path"):
                if not sys_entry.get(key):
                    raise ConfigError(f"{swhere}: {key} is required")
            # the system id names a service in lineage, migratedFrom links and record ids
            # ("epj:<system>:<service id>"): shared by two municipalities, their services would be mixed
            owner = system_owner.setdefault(sys_entry["system"], nr)
            if owner != nr or any(s.system == sys_entry["system"] for s in systems):
                raise ConfigError(
                    f"{swhere}: system {sys_entry['system']!r} is already the id of an EPJ system of kommune "
                    f"{owner}; each system id must be unique in the data root (e.g. '{sys_entry['system']}_{nr}')")
            active_from = _date(sys_entry.get("active_from"), swhere, "active_from")
            systems.append(EpjSystem(
                system=sys_entry["system"], format=fmt or mapping, path=sys_entry["path"], mapping=fmt or mapping,
                active_from=active_from,
                active_to=_date(sys_entry.get("active_to"), swhere, "active_to", required=False),
                history_from=_date(sys_entry.get("history_from", active_from), swhere, "history_from"),
                kommuner=tuple(sys_entry["kommuner"]) if "kommuner" in sys_entry else None,
            ))
        result.append(Municipality(
            nr=nr, name=entry.get("navn", nr), vendor=entry.get("leverandor", ""),
            epj_name=entry.get("navn_epj", ""), epj_version=entry.get("versjon_epj", ""),
            contacts=tuple(Contact(c.get("navn", ""), c.get("epost", ""), int(c.get("type", 0)))
                           for c in entry.get("kontaktpersoner", [])),
            epj=tuple(systems),
            her_id=her_id,
        ))
    return _with_shared_systems(path, data, result)


def _with_shared_systems(path: Path, data: dict, municipalities: list[Municipality]) -> list[Municipality]:
    """Resolve each `[[kommune.shared_epj]]` against the system its holder configures.

    A shared entry names the holder's system id and the units of this municipality's territory it holds
    (required: the export also holds the holder's own records); its dates default to the holder's.
    """
    held = {s.system: (m.nr, s) for m in municipalities for s in m.epj}
    resolved = []
    for i, (entry, municipality) in enumerate(zip(data.get("kommune", []), municipalities, strict=True), start=1):
        shared = []
        for j, share in enumerate(entry.get("shared_epj", []), start=1):
            where = f"{path} [[kommune]] #{i} [[kommune.shared_epj]] #{j}"
            system = share.get("system")
            if system not in held or held[system][0] == municipality.nr:
                raise ConfigError(f"{where}: system {system!r} must be an EPJ system another municipality "
                                  "configures (its holder reads the export)")
            if not share.get("kommuner"):
                raise ConfigError(f"{where}: kommuner is required: the units of this municipality's territory "
                                  f"that {system!r} holds")
            holder = held[system][1]
            shared.append(EpjSystem(
                system=system, format=holder.format, path=holder.path,
                active_from=_date(share.get("active_from"), where, "active_from", required=False)
                or holder.active_from,
                active_to=_date(share.get("active_to"), where, "active_to", required=False) or holder.active_to,
                history_from=holder.history_from, kommuner=tuple(share["kommuner"])))
        resolved.append(replace(municipality, shared_epj=tuple(shared)))
    return resolved
