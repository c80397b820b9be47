"""Feature modules; each contributes HTTP routes (see ledger.routes)."""
