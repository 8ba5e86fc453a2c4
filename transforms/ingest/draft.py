"""`ktt sources draft FILE...`: a first source mapping guessed from sample files, for a person to finish.

The guesses come from well-kept libraries and a look at the values: the encoding from
`charset_normalizer`, the CSV delimiter and header from the standard library's `csv.Sniffer`, the
JSON paths and XML record elements from the files' structure, and per field its kind (date or
timestamp in one of the formats Norwegian systems write, number with a decimal comma, a kommunenummer,
an organisation number, an 11-digit identifier, a few repeated words) and the staged column its name
suggests. What could not be guessed is left as a TODO comment; `ktt sources check` then shows what
the draft reads.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import re
from collections import Counter
from pathlib import Path

from charset_normalizer import from_bytes
from lxml import etree

from transforms.ingest.quarantine import mask_identifiers
from transforms.privacy.identity import Pseudonymizer

_TAG = Pseudonymizer(os.urandom(32)).tag
SAMPLE_BYTES = 1 << 20
SAMPLE_VALUES = 500
DATE_FORMATS = ("%d.%m.%Y", "%Y-%m-%d", "%d/%m/%Y", "%Y%m%d", "%d.%m.%y")
STAMP_FORMATS = ("%d.%m.%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%d.%m.%Y %H:%M", "%d/%m/%Y %H:%M:%S")
# words in a source field's name -> the staged column it probably feeds
NAME_HINTS = (
    (("fnr", "fodselsnr", "fødselsnr", "personnr", "nationalid", "ssn", "fid"), "national_id"),
    (("idtype", "id_type", "legitimasjon", "typeid"), "id_type"),
    (("kommunenr", "kommune", "municipality", "kommunenummer"), "unit"),
    (("brukernr", "klient", "clientid", "userno", "bruker"), "user_no"),
    (("kjonn", "kjønn", "sex", "gender"), "sex"),
    (("fodselsar", "fødselsår", "birthyear", "fodt", "født"), "birth_year"),
    (("bydel", "district"), "district"),
    (("dod", "død", "dodsdato", "deathdate"), "death_date"),
    (("tjenesteid", "serviceid", "vedtakid"), "service_id"),
    (("tjenestetype", "tjenestekode", "code", "type"), "service_code"),
    (("vedtaksdato", "vedtatt", "decisiondate"), "decision_date"),
    (("fra", "fradato", "fra_dato", "from", "start", "startdato"), "start_date"),
    (("til", "tildato", "til_dato", "to", "slutt", "sluttdato"), "end_date"),
    (("orgnr", "utforer", "utforer_orgnr", "providerorg", "provider"), "provider_org"),
    (("timer", "timerperuke", "timer_per_uke", "weeklyhours", "hours"), "hours_per_week"),
    (("registrert", "registrert_tid", "recordedat", "endret", "timestamp"), "registered_at"),
    (("endringstype", "status", "changetype"), "change_type"),
    (("stoppid", "pauseid"), "stop_id"),
)


def _key(name: str) -> str:
    return re.sub(r"[^a-zæøå0-9_]", "", name.split(".")[-1].split("/")[-1].replace("@", "").lower())


def suggest_target(name: str) -> str | None:
    key = _key(name)
    if key in ("type", "kind") and re.search(r"(fnr|personnr|nationalid|fodselsnr)", name.lower()):
        return "id_type"
    return next((target for words, target in NAME_HINTS if key in words), None)


def guess_kind(values: list[str]) -> tuple[str, str]:
    """(kind, detail) of a field from sample values: date/timestamp with its format, number, code, text."""
    filled = [v.strip() for v in values if v is not None and str(v).strip()]
    if not filled:
        return "empty", "no value in the sample"
    sample = filled[:SAMPLE_VALUES]

    def share(test) -> float:
        return sum(1 for v in sample if test(v)) / len(sample)

    for kind, formats in (("timestamp", STAMP_FORMATS), ("date", DATE_FORMATS)):
        for fmt in formats:
            if share(lambda v, fmt=fmt: _parses(v, fmt)) >= 0.95:
                return kind, fmt
    if share(_iso_stamp) >= 0.95:
        return "timestamp", "iso8601"
    if share(lambda v: re.fullmatch(r"\d{11}", v) is not None) >= 0.95:
        return "identifier", "11 digits"
    if share(lambda v: re.fullmatch(r"\d{9}", v) is not None) >= 0.95:
        return "org", "9 digits"
    if share(lambda v: re.fullmatch(r"\d{4}", v) is not None) >= 0.95:
        return "four digits", "kommunenummer or year"
    if share(lambda v: re.fullmatch(r"-?\d+,\d+|-?\d+", v) is not None) >= 0.95 and any("," in v for v in sample):
        return "number", "decimal comma"
    if share(lambda v: re.fullmatch(r"-?\d+(\.\d+)?", v) is not None) >= 0.95:
        return "number", "decimal point"
    words = Counter(sample)
    if len(words) <= 30 and len(sample) >= 2 * len(words):
        return "code", ", ".join(w for w, _ in words.most_common(30))
    return "text", f"{len(words)} distinct values in {len(sample)}"


def _parses(value: str, fmt: str) -> bool:
    try:
        dt.datetime.strptime(value, fmt)
        return True
    except ValueError:
        return False


def _iso_stamp(value: str) -> bool:
    try:
        return "T" in value and dt.datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def _encoding(data: bytes) -> str:
    best = from_bytes(data).best()
    name = best.encoding if best is not None else "utf-8"
    return {"ascii": "utf-8", "utf_8": "utf-8", "windows-1252": "cp1252"}.get(name, name)


# --- per format: (format keys, records: {name: (selector keys, {field: sample values})}) ----------------
def _csv(path: Path, data: bytes) -> tuple[dict, dict]:
    encoding = _encoding(data)
    text = data.decode(encoding, errors="replace")
    sniffer = csv.Sniffer()
    sample = text[:64_000]
    try:
        dialect = sniffer.sniff(sample, delimiters=";,\t|")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ";"
    try:
        header = sniffer.has_header(sample)
    except csv.Error:
        header = True
    rows = list(csv.reader(text.splitlines()[:SAMPLE_VALUES + 1], delimiter=delimiter))
    names = rows[0] if header and rows else [f"column{i + 1}" for i in range(len(rows[0]) if rows else 0)]
    body = rows[1:] if header else rows
    fields = {n.strip().lower(): [r[i] if i < len(r) else "" for r in body] for i, n in enumerate(names)}
    values = [v for column in fields.values() for v in column]
    fmt = {"type": "csv", "encoding": encoding, "delimiter": delimiter, "header": header,
           "decimal_comma": any(re.fullmatch(r"\d+,\d+", v.strip() or "x") for v in values)}
    return fmt, {"file": ({"file": path.name}, fields)}


def _flatten(obj: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _jsonl(path: Path, data: bytes) -> tuple[dict, dict]:
    encoding = _encoding(data)
    events = []
    for line in data.decode(encoding, errors="replace").splitlines()[:5 * SAMPLE_VALUES]:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(_flatten(event))
    keys = Counter(k for e in events for k in e)
    kind_field = next((k for k, _ in keys.most_common() if all(isinstance(e.get(k), str) for e in events)
                       and 1 < len({e.get(k) for e in events}) <= 6), None)
    groups: dict[str, list[dict]] = {}
    for event in events:
        groups.setdefault(str(event.get(kind_field)) if kind_field else "records", []).append(event)
    records = {}
    for kind, members in groups.items():
        names = sorted(dict.fromkeys(k for e in members for k in e), key=lambda k: -keys[k])  # stable: first seen
        records[kind] = ({"kind": kind} if kind_field else {},
                         {n: [None if e.get(n) is None else str(e.get(n)) for e in members] for n in names
                          if n != kind_field})
    fmt = {"type": "jsonl", "encoding": encoding, "files": [path.name], "kind_field": kind_field}
    return fmt, records


def _xml(path: Path, data: bytes) -> tuple[dict, dict]:
    root = etree.fromstring(data[:SAMPLE_BYTES] if len(data) <= SAMPLE_BYTES else data)
    by_path: dict[str, list[etree._Element]] = {}
    for elem in root.iter():
        if not isinstance(elem.tag, str) or (len(elem.attrib) < 2 and not len(elem)):
            continue
        steps = [etree.QName(e).localname for e in (*reversed(list(elem.iterancestors())), elem)]
        by_path.setdefault("/" + "/".join(steps), []).append(elem)
    records = {}
    for path_, elems in by_path.items():
        if len(elems) < 2 or path_.count("/") < 2:
            continue
        fields: dict[str, list] = {}
        for elem in elems[:SAMPLE_VALUES]:
            for name, value in elem.attrib.items():
                fields.setdefault(f"@{name}", []).append(value)
            for child in elem:
                if isinstance(child.tag, str) and not len(child):
                    fields.setdefault(etree.QName(child).localname, []).append(child.text)
                    for name, value in child.attrib.items():
                        fields.setdefault(f"{etree.QName(child).localname}/@{name}", []).append(value)
        records[path_.rsplit("/", 1)[1]] = ({"path": path_}, fields)
    return {"type": "xml", "encoding": "utf-8", "files": [path.name]}, records


def _toml(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def draft(paths: list[Path]) -> str:
    """A draft mapping (TOML text) from sample files of one export."""
    lines = ["# Draft source mapping written by `ktt sources draft` from " + ", ".join(p.name for p in paths) + ".",
             "# Finish it: check every guess, map the TODOs, then `ktt sources check --system <id>`.",
             "# Keys: docs/source-mappings.md.", "",
             "[mapping]", f'name = "{paths[0].parent.name or "my-export"}"', 'history = "audit-trail"'
             '  # or "snapshot-series" for full dumps (then add [snapshots])', ""]
    fmt_done = False
    used: set[str] = set()
    for path in paths:
        data = path.read_bytes()[:SAMPLE_BYTES]
        suffix = path.suffix.lower()
        reader = _jsonl if suffix in (".jsonl", ".ndjson", ".json") else _xml if suffix == ".xml" else _csv
        fmt, records = reader(path, data)
        if not fmt_done:
            lines.append("[format]")
            lines += [f"{k} = {_toml(v)}" for k, v in fmt.items() if v is not None and k != "files"]
            if "files" in fmt:
                lines.append(f"files = {_toml([p.name for p in paths])}")
            lines.append("")
            fmt_done = True
        for name, (selector, fields) in records.items():
            lines += _record(_section(fields, used), name, selector, fields)
    return "\n".join(lines) + "\n"


def _section(fields: dict[str, list], used: set[str]) -> str:
    """persons, services or stops, by the columns the fields suggest (a numbered name when unsure)."""
    targets = {suggest_target(f) for f in fields}
    guess = ("persons" if "national_id" in targets else "services" if "service_code" in targets
             else "stops" if "start_date" in targets or "stop_id" in targets else None)
    if guess is None or guess in used:
        guess = f"records{len(used) + 1}"
    used.add(guess)
    return guess


def _record(section: str, name: str, selector: dict, fields: dict[str, list]) -> list[str]:
    lines = [f"# records read from {name}: rename the section to persons, services or stops",
             f"[records.{section}]"]
    lines += [f"{k} = {_toml(v)}" for k, v in selector.items()]
    lines += ["location = []  # TODO: fields that name a record (never the person identifier)", "",
              f"[records.{section}.columns]"]
    for field, values in fields.items():
        kind, detail = guess_kind([v for v in values if v is not None])
        target = suggest_target(field)
        note = f"# {kind}: {mask_identifiers(detail[:80], _TAG)}"  # no identifier in a draft
        if target is None:
            lines.append(f"# TODO {_toml(field)} -> ?  {note}")
        elif kind in ("date", "timestamp") and detail not in (DATE_FORMATS[1], "iso8601"):
            lines.append(f"{target} = {{ from = {_toml(field)}, format = {_toml(detail)} }}  {note}")
        elif target in ("id_type", "change_type") or (target == "service_code" and kind == "code"):
            lines.append(f"{target} = {{ from = {_toml(field)}, map = \"{target}\" }}  {note}"
                         f"  TODO: add [maps.{target}]")
        else:
            lines.append(f"{target} = {_toml(field)}  {note}")
    return [*lines, ""]
