"""Submission: events from episodes, plans against the ledger, daily message files, the ledger itself,
replay and resend, and the message serializers."""
