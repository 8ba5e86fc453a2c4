"""All of the pipeline's logic, in plain Python with no Dagster import, one folder per stage.

- `core/`       settings, `config/kommuner.toml`, the data-root layout, atomic writes, DuckDB connections
- `tables/`     every table the pipeline writes, declared once (columns, types, descriptions, paths)
- `reference/`  municipality numbers over time (SSB's grouping and the curated succession table) and the
                code lists, each file loaded in one place
- `privacy/`    the key file, identifier checks, pseudonyms and the encrypted identity vault
- `ingest/`     sources to staged Parquet: readers, the per-file sink, quarantine rules, conservation
- `timeline/`   split units' records to successors, coverage, linking and stitching, episodes, daily
                aggregates (DuckDB SQL)
- `submit/`     events, planning against the ledger, message files, the ledger, replay, resend, serializers
- `deliver/`    delivery to the registry: configuration, transports, HelseID tokens, the CMS envelope, the
                delivery state in the ledger, the runner (order, retries, stop rules), status
- `report/`     the analyst warehouse, run summaries, Markdown tables and charts
- `synthetic/`  the synthetic worlds for the demo and the tests (no production module imports it)
- `sandbox/`    the sandbox registry for rehearsals, the demo and the tests (no production module imports it)
"""
