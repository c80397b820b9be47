"""Server entry point: ``python3 -m ledger.server --config FILE``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from . import config, db, schema
from .app import LedgerServer
from .version import VERSION

log = logging.getLogger("ledger")

EXIT_CONFIG = 1
EXIT_SCHEMA = 2
EXIT_BIND = 4


def setup_logging() -> None:
    """Log to stderr (ledgerctl points stderr at the log file)."""
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s ledger[%(process)d] %(message)s",
    )


def install_signal_handlers(httpd: LedgerServer) -> None:
    """SIGTERM/SIGINT stop accepting and let in-flight requests finish."""

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("received signal %d, shutting down", signum)
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def serve(cfg: config.Config) -> int:
    """Check the database, then serve until a stop signal."""
    try:
        created = db.initialize(cfg.db)
    except db.SchemaMismatchError as exc:
        log.error("refusing to start ledger %s: %s", VERSION, exc)
        return EXIT_SCHEMA
    if created:
        log.info("created database %s at schema %d", cfg.db, schema.SCHEMA)
    try:
        httpd = LedgerServer(cfg)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", cfg.bind, cfg.port, exc)
        return EXIT_BIND
    install_signal_handlers(httpd)
    log.info(
        "ledger %s listening on %s:%d (schema %d, db %s)",
        VERSION,
        cfg.bind,
        httpd.server_address[1],
        schema.SCHEMA,
        cfg.db,
    )
    with httpd:
        httpd.serve_forever(poll_interval=0.2)
    log.info("ledger %s stopped", VERSION)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, load the config and serve."""
    parser = argparse.ArgumentParser(prog="ledger-server", description=__doc__)
    parser.add_argument("--config", default=config.DEFAULT_CONFIG)
    args = parser.parse_args(argv)
    setup_logging()
    try:
        cfg = config.load(args.config)
    except config.ConfigError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    return serve(cfg)


if __name__ == "__main__":
    sys.exit(main())
