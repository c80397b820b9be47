"""Snapshot and restore seconds of a PostgreSQL data item of about SIZE_MB (default 100),
against the anchor of the same work done with the bare client tools, same server, same run.

A cluster is started for the run on 127.0.73.1 (tests/pg_cluster.py: fsync on), with one
database holding a ``tx`` table (id, account, amount, a ~60-byte note) and an index.

- anchor capture: ``pg_dump -Fc`` alone; relctl's capture: the same dump inside an exported
  repeatable-read snapshot plus the logical digest of that snapshot (schema dump, every
  row hashed, sequences);
- anchor restore: ``pg_restore --clean --if-exists --single-transaction`` alone; relctl's
  restore: drop every object then the dump's SQL in one ``psql --single-transaction``,
  then the digest check relctl does after every restore.

Run: .venv/bin/python bench/pg_item.py [SIZE_MB] [ROUNDS]   (default 100 MB, 3 rounds)
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from controller.data import engine_for  # noqa: E402
from controller.models.items import DataItem  # noqa: E402
from tests.pg_cluster import PG_BIN, start_cluster  # noqa: E402

ADDRESS = "127.0.73.1"
ROW_BYTES = 180  # what one row takes in the database (heap and two indexes), measured


def main() -> None:
    size_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    cluster = start_cluster(ADDRESS)
    try:
        cluster.sql("CREATE DATABASE bench OWNER relctl")
        url = cluster.url("bench")
        rows = size_mb * 1024 * 1024 // ROW_BYTES
        subprocess.run([str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c",
                        "CREATE TABLE tx (id bigserial PRIMARY KEY, account text, amount int, "
                        "note text); INSERT INTO tx (account, amount, note) SELECT 'acct' || "
                        f"(g % 5000), g % 100000, md5(g::text) || md5((g * 7)::text) FROM "
                        f"generate_series(1, {rows}) g; CREATE INDEX ON tx (account)",
                        "-c", "VACUUM ANALYZE tx"], check=True)
        size = subprocess.run([str(PG_BIN / "psql"), "-X", "-At", url, "-c",
                               "SELECT pg_database_size('bench')"],
                              capture_output=True, text=True, check=True).stdout.strip()
        os.environ["RELCTL_BENCH_PG_PASSWORD"] = cluster.password
        item = DataItem.model_validate({
            "kind": "data", "name": "bench-db", "engine": "postgresql",
            "postgresql": {"host": ADDRESS, "port": cluster.port, "database": "bench",
                           "user": "relctl", "password_env": "RELCTL_BENCH_PG_PASSWORD"}})
        engine = engine_for(item)
        assert engine is not None
        figures: dict[str, list[float]] = {k: [] for k in
                                           ("dump", "capture", "pg_restore", "restore")}
        with tempfile.TemporaryDirectory(prefix="relctl-bench-pg-", dir="/var/tmp") as tmp:
            folder = Path(tmp)
            plain = folder / "plain.pgdump"
            env = {**os.environ, "PGPASSWORD": cluster.password}
            target = ["-h", ADDRESS, "-p", str(cluster.port), "-U", "relctl", "-d", "bench"]
            for _ in range(rounds):
                began = time.monotonic()
                subprocess.run([str(PG_BIN / "pg_dump"), "-Fc", "-f", str(plain), *target],
                               env=env, check=True)
                figures["dump"].append(time.monotonic() - began)
                began = time.monotonic()
                capture = engine.capture(folder)
                figures["capture"].append(time.monotonic() - began)
                began = time.monotonic()
                subprocess.run([str(PG_BIN / "pg_restore"), "--clean", "--if-exists",
                                "--single-transaction", *target, str(plain)], env=env,
                               check=True)
                figures["pg_restore"].append(time.monotonic() - began)
                began = time.monotonic()
                engine.restore(capture.dump)
                assert engine.digest() == capture.digest
                figures["restore"].append(time.monotonic() - began)
            dump_mb = plain.stat().st_size / 1e6
    finally:
        cluster.stop()
    median = {k: statistics.median(v) for k, v in figures.items()}
    print(f"PostgreSQL item: {rows} rows, database {int(size) / 1e6:.0f} MB, dump "
          f"{dump_mb:.0f} MB (-Fc), median of {rounds}")
    ratio = median["capture"] / median["dump"]
    print(f"  snapshot: relctl {median['capture']:.2f} s (dump + digest of the same "
          f"snapshot) vs pg_dump alone {median['dump']:.2f} s: x{ratio:.2f}")
    print(f"  restore:  relctl {median['restore']:.2f} s (one transaction + digest check) vs "
          f"pg_restore --clean alone {median['pg_restore']:.2f} s: "
          f"x{median['restore'] / median['pg_restore']:.2f}")


if __name__ == "__main__":
    main()
