"""``python -m controller`` runs the relctl CLI."""

from __future__ import annotations

from controller.cli.main import main

main()
