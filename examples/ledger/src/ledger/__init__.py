"""ledger: a tiny transaction-recording HTTP service (sample app for relctl)."""
