"""The least a Python ingester can do (issue 2, "Speed"): parse each JSON line with the json module and
executemany the rows into a SQLite table in WAL mode (synchronous=NORMAL), in one transaction.

Same columns as govcon's command_events, with a unique index on (command_id, status) and duplicates
ignored, so it does the same physical work minus validation. Usage: python baseline_ingest.py FILE DB
"""

import json
import sqlite3
import sys
from datetime import UTC, datetime

SCHEMA = """
CREATE TABLE IF NOT EXISTS command_events (
    id INTEGER PRIMARY KEY, command_id VARCHAR(200) NOT NULL, command_type VARCHAR(200) NOT NULL,
    status VARCHAR(20) NOT NULL, autonomous BOOLEAN NOT NULL, at DATETIME NOT NULL,
    ingested_at DATETIME NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS uq_id_status ON command_events (command_id, status);
"""


def main(path: str, db: str) -> int:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    now = datetime.now(UTC).isoformat()
    with open(path, encoding="utf-8") as f:
        rows = [(e["id"], e["type"], e["status"], e["autonomous"], e["at"], now)
                for e in map(json.loads, f)]
    conn.execute("BEGIN")
    conn.executemany("INSERT OR IGNORE INTO command_events (command_id, command_type, status, autonomous,"
                     " at, ingested_at) VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    stored = conn.execute("SELECT count(*) FROM command_events").fetchone()[0]
    conn.close()
    print(stored)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
