"""Ingestion's tables: the staged tables, the quarantine, per-file counts and the identity vault.

Person columns are pseudonyms (`person_key`), never raw identifiers; the raw identifiers exist only
in the encrypted identity vault.
"""

from __future__ import annotations

import polars as pl

from transforms.tables.model import Column, Table


def _c(name: str, dtype, description: str) -> Column:
    return Column(name, dtype, description)


IPLOS_PARTS = "staging/iplos/year={year}/kommune={unit}/"
EPJ_PARTS = "staging/epj/system={system}/"
# a staged table's parts are named after their source file ({source}: the file's path with / as __)
PART = "-{source}-{part}.parquet"


# Lineage columns every staged record carries, so any record can be traced to its file.
LINEAGE = (
    _c("source_file", pl.Utf8, "path of the source file, relative to the data root"),
    _c("line", pl.Int64, "1-based line of the record in the source file (XML: line of the element)"),
    _c("location", pl.Utf8, "element path (XML) or field/record id (CSV, JSONL) of the record"),
)

IPLOS_PREFIX = (
    *LINEAGE,
    _c("layout", pl.Utf8, "yearly extract layout, '3.6' or '3.7'"),
    _c("data_year", pl.Int32, "data year the extract covers (1 Jan - 31 Dec)"),
    _c("unit", pl.Utf8, "kommunenummer the file is filed under (valid in the data year)"),
)

IPLOS_PERSONS = Table(
    "iplos_persons",
    "One row per person (Bruker/Person) of a yearly IPLOS extract.",
    (
        *IPLOS_PREFIX,
        _c("extract_date", pl.Date, "date the extract was taken (uttakDato)"),
        _c("user_no", pl.Utf8, "the EPJ's local user number (brukerNr)"),
        _c("person_key", pl.Utf8, "keyed pseudonym of the person identifier (HMAC-SHA256)"),
        _c("id_type", pl.Int32, "identifier type, code list 9032"),
        _c("sex", pl.Int32, "sex, code list 3101"),
        _c("birth_year", pl.Int32, "birth year"),
        _c("district", pl.Utf8, "bydel, where given"),
        _c("death_date", pl.Date, "date of death, where given"),
        _c("household", pl.Int32, "household code (Husstand)"),
    ),
    path=IPLOS_PARTS + "iplos_persons" + PART,
    asset="iplos_persons",
    sort=("source_file", "line", "location"),
)

IPLOS_SERVICES = Table(
    "iplos_services",
    "One row per allocated service (Tjeneste) of a yearly IPLOS extract.",
    (
        *IPLOS_PREFIX,
        _c("extract_date", pl.Date, "date the extract was taken"),
        _c("user_no", pl.Utf8, "brukerNr of the person the service belongs to"),
        _c("person_key", pl.Utf8, "pseudonym of the person"),
        _c("service_id", pl.Utf8, "tjenesteID (layout 3.7 only; null in 3.6)"),
        _c("service_code", pl.Utf8, "service type as given, code list 9151 (12/13 kept as in 3.6)"),
        _c("decision_date", pl.Date, "vedtaksdato"),
        _c("start_date", pl.Date, "start of the service (may be years before the data year)"),
        _c("end_date", pl.Date, "end of the service; null when open on 31 Dec of the data year"),
        _c("provider_org", pl.Utf8, "tjenesteOrgNr at extract time"),
        _c("hours_per_week", pl.Float64, "hours per week by decision"),
    ),
    path=IPLOS_PARTS + "iplos_services" + PART,
    asset="iplos_services",
    sort=("source_file", "line", "location"),
)

IPLOS_STOPS = Table(
    "iplos_stops",
    "One row per temporary stop (MidlertidigStopp) of a layout 3.7 extract.",
    (
        *IPLOS_PREFIX,
        _c("extract_date", pl.Date, "date the extract was taken"),
        _c("person_key", pl.Utf8, "pseudonym of the person"),
        _c("service_id", pl.Utf8, "tjenesteID of the stopped service"),
        _c("stop_id", pl.Utf8, "stoppID"),
        _c("from_date", pl.Date, "first day of the stop"),
        _c("to_date", pl.Date, "last day of the stop; null when still stopped on 31 Dec"),
    ),
    path=IPLOS_PARTS + "iplos_stops" + PART,
    asset="iplos_stops",
    sort=("source_file", "line", "location"),
)

IPLOS_ASSESSMENTS = Table(
    "iplos_assessments",
    "One row per function variable score of a function assessment.",
    (
        *IPLOS_PREFIX,
        _c("person_key", pl.Utf8, "pseudonym of the person"),
        _c("assessment_date", pl.Date, "date of the assessment"),
        _c("variable", pl.Utf8, "function variable, layout 3.7 name"),
        _c("score", pl.Int32, "1-5, or 9 for not relevant"),
    ),
    path=IPLOS_PARTS + "iplos_assessments" + PART,
    asset="iplos_assessments",
    sort=("source_file", "line", "location"),
)

IPLOS_DIAGNOSES = Table(
    "iplos_diagnoses",
    "One row per diagnosis of a layout 3.7 extract.",
    (
        *IPLOS_PREFIX,
        _c("person_key", pl.Utf8, "pseudonym of the person"),
        _c("system", pl.Utf8, "code system, ICD10 or ICPC2"),
        _c("code", pl.Utf8, "diagnosis code"),
        _c("diagnosis_date", pl.Date, "date of the diagnosis"),
    ),
    path=IPLOS_PARTS + "iplos_diagnoses" + PART,
    asset="iplos_diagnoses",
    sort=("source_file", "line", "location"),
)

EPJ_PREFIX = (
    *LINEAGE,
    _c("system", pl.Utf8, "EPJ system id from config/kommuner.toml"),
    _c("reporting_kommune", pl.Utf8, "today's reporting municipality the system is configured for"),
    _c("unit", pl.Utf8, "kommunenummer on the record (valid when registered)"),
    _c("registered_at", pl.Datetime("us", "UTC"), "when the registration was made (UTC)"),
)

EPJ_PERSONS = Table(
    "epj_persons",
    "One row per registration of a person in an EPJ export; later rows replace earlier ones.",
    (
        *EPJ_PREFIX,
        _c("user_no", pl.Utf8, "the system's local user number (brukernr / clientId)"),
        _c("person_key", pl.Utf8, "pseudonym of the person identifier"),
        _c("id_type", pl.Int32, "identifier type, code list 9032"),
        _c("sex", pl.Int32, "sex, code list 3101"),
        _c("birth_year", pl.Int32, "birth year"),
        _c("district", pl.Utf8, "bydel"),
        _c("death_date", pl.Date, "date of death"),
    ),
    path=EPJ_PARTS + "epj_persons" + PART,
    asset="epj_persons",
    sort=("source_file", "line", "location"),
)

EPJ_SERVICE_VERSIONS = Table(
    "epj_service_versions",
    "One row per registration of a service record; each holds the whole record after it.",
    (
        *EPJ_PREFIX,
        _c("user_no", pl.Utf8, "local user number of the service's person"),
        _c("service_id", pl.Utf8, "the system's service id"),
        _c("service_code", pl.Utf8, "service type, code list 9151"),
        _c("decision_date", pl.Date, "vedtaksdato"),
        _c("start_date", pl.Date, "from date"),
        _c("end_date", pl.Date, "to date, null while open"),
        _c("provider_org", pl.Utf8, "provider organisation number"),
        _c("hours_per_week", pl.Float64, "hours per week"),
        _c("change_type", pl.Utf8, "NY, ENDRET or ANNULLERT"),
        _c("migrated_from_system", pl.Utf8, "migratedFrom.system, where given"),
        _c("migrated_from_service_id", pl.Utf8, "migratedFrom.serviceId, where given"),
    ),
    path=EPJ_PARTS + "epj_service_versions" + PART,
    asset="epj_service_versions",
    sort=("source_file", "line", "location"),
)

EPJ_STOPS = Table(
    "epj_stops",
    "One row per registration of a temporary stop in an EPJ export.",
    (
        *EPJ_PREFIX,
        _c("service_id", pl.Utf8, "service the stop belongs to"),
        _c("stop_id", pl.Utf8, "the system's stop id"),
        _c("from_date", pl.Date, "first day of the stop"),
        _c("to_date", pl.Date, "last day of the stop; null while stopped"),
        _c("change_type", pl.Utf8, "NY, ENDRET or ANNULLERT"),
    ),
    path=EPJ_PARTS + "epj_stops" + PART,
    asset="epj_stops",
    sort=("source_file", "line", "location"),
)

EPJ_SNAPSHOT_DISAPPEARED = Table(
    "epj_snapshot_disappeared",
    "Records a snapshot dump no longer held: ended on the dump date or annulled, as the mapping says.",
    (
        _c("source_file", pl.Utf8, "the dump that no longer holds the record"),
        _c("system", pl.Utf8, "EPJ system id from config/kommuner.toml"),
        _c("reporting_kommune", pl.Utf8, "today's reporting municipality the system is configured for"),
        _c("record_kind", pl.Utf8, "person, service or stop"),
        _c("record_key", pl.Utf8, "the record's id in the system (user number; service id; service id/stop id)"),
        _c("last_seen_in", pl.Utf8, "the dump whose version was the record's last"),
        _c("dump_date", pl.Date, "date of the dump that no longer holds it"),
        _c("action", pl.Utf8, "ended (a version ending it on the dump date), annulled, or none (persons; "
                              "a record that had ended already)"),
    ),
    path=EPJ_PARTS + "epj_snapshot_disappeared-{source}.parquet",
    asset=None,
    written_with=("epj_service_versions",),
    sort=("source_file", "record_kind", "record_key"),
)

STAGED_NAMES = ("iplos_persons", "iplos_services", "iplos_stops", "iplos_assessments", "iplos_diagnoses",
                "epj_persons", "epj_service_versions", "epj_stops")

QUARANTINE = Table(
    "quarantine",
    "Every input record (or whole file) that could not be staged, with the rule it broke.",
    (
        *LINEAGE,
        _c("format", pl.Utf8, "input format: iplos (layout 3.6 or 3.7), or the EPJ export's source mapping"),
        _c("record_kind", pl.Utf8, "person, service, stop, assessment, diagnosis or file"),
        _c("rule_id", pl.Utf8, "stable id of the rule the record broke (transforms.ingest.quarantine.RULES)"),
        _c("message", pl.Utf8, "what is wrong, for a person to read"),
        _c("raw_value", pl.Utf8, "the offending record as read, identifiers replaced by pseudonyms"),
    ),
    path="staging/quarantine/{source}.parquet",
    asset=None,  # written beside the staged tables by each ingestion asset
    written_with=STAGED_NAMES,
    sort=("source_file", "line", "location"),
)

FILE_COUNTS = Table(
    "file_counts",
    "Per source file: records read, staged and quarantined (the conservation check's input).",
    (
        _c("source_file", pl.Utf8, "path relative to the data root"),
        _c("format", pl.Utf8, "input format"),
        _c("record_kind", pl.Utf8, "kind of record counted"),
        _c("records_in", pl.Int64, "records found in the file (a snapshot dump: also the records of the last "
                                   "state it no longer holds)"),
        _c("staged", pl.Int64, "records written to staged tables"),
        _c("quarantined", pl.Int64, "records written to the quarantine"),
        _c("unchanged", pl.Int64, "snapshot dumps: records equal to their last staged version (no new version)"),
    ),
    path="staging/file_counts/{source}.parquet",
    asset=None,
    written_with=STAGED_NAMES,
    sort=("source_file", "record_kind"),
)

IDENTITY_PARTS = Table(
    "identity_parts",
    ("The identifiers one source file held, an Arrow IPC file AES-GCM encrypted (cheap to open at each merge): "
     "merged into the vault, encrypted Parquet, by identity_vault."),
    (
        Column("person_key", pl.Utf8, "the pseudonym the identifier gives"),
        Column("fid", pl.Utf8, "the raw identifier (encrypted at rest; readable only with the vault key)"),
        Column("id_type", pl.Int32, "identifier type, code list 9032"),
    ),
    path="identity/parts/{source}.bin",
    asset=None,
    written_with=("iplos_persons", "epj_persons"),
    sort=("person_key", "fid", "id_type"),
    storage="vault",
)

IDENTITY_VAULT = Table(
    "identity_vault",
    "Every person's raw identifier by pseudonym, AES-GCM encrypted; only the message writer reads it.",
    IDENTITY_PARTS.columns,
    path="identity/vault.bin",
    asset="identity_vault",
    reads=("identity_parts",),
    sort=("person_key", "fid", "id_type"),
    storage="vault",
)

IPLOS_TABLES = (IPLOS_PERSONS, IPLOS_SERVICES, IPLOS_STOPS, IPLOS_ASSESSMENTS, IPLOS_DIAGNOSES)
EPJ_TABLES = (EPJ_PERSONS, EPJ_SERVICE_VERSIONS, EPJ_STOPS)
FINDING_TABLES = (EPJ_SNAPSHOT_DISAPPEARED,)  # written per source file beside the staged tables

STAGED_TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        IPLOS_PERSONS,
        IPLOS_SERVICES,
        IPLOS_STOPS,
        IPLOS_ASSESSMENTS,
        IPLOS_DIAGNOSES,
        EPJ_PERSONS,
        EPJ_SERVICE_VERSIONS,
        EPJ_STOPS,
    )
}
