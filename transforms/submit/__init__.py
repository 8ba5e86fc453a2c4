"""Submission: events from episodes, plans against the ledger, daily message files, the ledger itself,
the asset checks, replay and resend, and the message serializers.

- `events`      episodes -> the events a message reports (`EVENTS`), each with its key, day and content hash
- `ledger`      the system of record (`LEDGER_TABLES`): its DDL, the writer lock, integrity and status queries
- `planning`    what a run sends (N, M, C) against the ledger, numbered, with GUIDs and brukerNr
- `writer`      `SubmissionWriter`: plans, hands message jobs to a process pool, commits; the manifest
- `messages`    a message job: one municipality's days rendered, validated and written atomically
- `checks`      the `daily_submissions` asset checks (schema, numbering and chain, replay)
- `replay`      the ledger's N/M/C replayed against the current events
- `resend`      copies of sent notifications into `outbox/`
- `serializers` the message model, the serializer interface (and its optional bulk path), XPR 56
"""
