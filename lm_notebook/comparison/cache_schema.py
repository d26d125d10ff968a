"""The answer cache's file and tables: where it lives, whether a file is ours to write, its tables and the statements
on them, and the move of rows' records an older version stored as JSON to the columns.

Two tables: ``responses`` (any record as JSON: a judge's, an embedding's, a row's stored before the columns) and
``answers_1`` (a compare row's record, one field a column). Nothing is written to a file before it is known ours.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Marks an SQLite file as this cache ("lmnb"), so a database of anyone else's is never written to.
APPLICATION_ID = 0x6C6D6E62
_RESPONSES_COLUMNS = ("key", "model", "created", "record")
# A compare row's record (rows.Outcome.record()) is stored one field a column in this table, so a cached re-run reads
# plain tuples (no JSON to parse); any other record (a judge's, an embedding) stays JSON in ``responses``. The
# table's name is its version: bump it when the fields change (the old table's rows then miss, as old keys do).
ANSWER_FIELDS = (
    "status", "response", "reasoning", "finish_reason", "error", "error_type", "ttft_s", "latency_s", "tokens_per_s",
    "prompt_tokens", "completion_tokens", "started_at", "served_model", "attempts", "cold", "tool_calls",
    "tool_errors", "rounds", "server_ttft_s", "server_tokens_per_s", "reasoning_tokens", "server_load_s",
)
ANSWER_SET = frozenset(ANSWER_FIELDS)
ANSWERS = "answers_1"
# no declared types: SQLite keeps each value as given (an int stays an int, 1.0 stays a float)
CREATE_ANSWERS = (
    f"CREATE TABLE IF NOT EXISTS {ANSWERS} (key TEXT PRIMARY KEY, model TEXT, created REAL, "
    f"{', '.join(ANSWER_FIELDS)})"
)
INSERT_ANSWER = (
    f"INSERT OR REPLACE INTO {ANSWERS} (key, model, created, {', '.join(ANSWER_FIELDS)}) "
    f"VALUES ({', '.join('?' * (3 + len(ANSWER_FIELDS)))})"
)
SELECT_ANSWERS = f"SELECT {', '.join(ANSWER_FIELDS)}, key FROM {ANSWERS}"
_SQLITE_HEADER = b"SQLite format 3\x00"
# SQLite before 3.32 allows at most 999 parameters in one statement
KEYS_PER_QUERY = 900
WHAT_TO_PASS = "Pass a file path of its own, e.g. cache='answers.sqlite', or cache=True for the default location."


def default_cache_path() -> Path:
    """``$LM_NOTEBOOK_CACHE_DIR/compare.sqlite``, else the user cache directory (XDG on Linux)."""
    base = os.environ.get("LM_NOTEBOOK_CACHE_DIR")
    if base:
        return Path(base).expanduser() / "compare.sqlite"
    xdg = os.environ.get("XDG_CACHE_HOME")
    root = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return root / "lm_notebook" / "compare.sqlite"


def check_cache_file(path: Path) -> bool:
    """Refuse (``ValueError``, naming the path and what to pass) a path that is not ours to write: a directory, a
    file with other bytes. A missing or empty file is fine (it becomes the cache); nothing is written here, so a
    refused file is left exactly as it was. Returns whether the file is an SQLite database already, whose tables
    :func:`check_database` must then look at (on the connection the cache opens: the file is opened once)."""
    if path.is_dir():
        raise ValueError(
            f"cache={str(path)!r} is a directory: pass a file in it, e.g. cache={str(path / 'compare.sqlite')!r}, "
            "or cache=True for the default location."
        )
    if path.exists() and not path.is_file():
        raise ValueError(f"cache={str(path)!r} is not a regular file. {WHAT_TO_PASS}")
    existing = path.is_file() and path.stat().st_size > 0
    if existing:
        with path.open("rb") as f:
            header = f.read(len(_SQLITE_HEADER))
        if header != _SQLITE_HEADER:
            raise ValueError(
                f"cache={str(path)!r} is a file that is not an answer cache (not an SQLite database); it is left "
                f"as it is. {WHAT_TO_PASS}"
            )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cache={str(path)!r}: cannot make its folder ({exc}). {WHAT_TO_PASS}") from exc
    return existing


def check_database(db: sqlite3.Connection, path: Path) -> int:
    """An existing SQLite file is ours when it carries our application id, or (made before the id was set) holds
    just our table; else ``ValueError``. Only reads (nothing is written before this passes). Returns the id."""
    try:
        (application_id,) = db.execute("PRAGMA application_id").fetchone()
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        columns = tuple(row[1] for row in db.execute("PRAGMA table_info(responses)"))
    except sqlite3.Error as exc:
        raise ValueError(
            f"cache={str(path)!r} cannot be read as an answer cache ({exc}); it is left as it is. {WHAT_TO_PASS}"
        ) from exc
    ours = tables in (["responses"], ["responses", ANSWERS]) and columns == _RESPONSES_COLUMNS
    if application_id == APPLICATION_ID or (application_id == 0 and ours):
        return int(application_id)
    what = f"its tables: {', '.join(tables)}" if tables else "another application's"
    raise ValueError(
        f"cache={str(path)!r} is an SQLite database that is not an answer cache ({what}); it is left as it is. "
        f"{WHAT_TO_PASS}"
    )


def create_tables(db: sqlite3.Connection, path: Path | str, application_id: int) -> None:
    """Our settings, id and tables on ``db`` (``application_id``: the file's, 0 for a new one); ``ValueError``
    naming ``path`` when SQLite refuses."""
    try:
        if isinstance(path, Path):
            # a commit per answer must not wait for the disk: in write-ahead-log mode with synchronous=NORMAL a
            # commit is atomic and survives the process, but only a checkpoint waits for an fsync (a power cut
            # may lose the last answers, never the file). Each commit waiting for the disk (~15 ms) on compare's
            # event loop held every stream in flight: 1,000 short rows took 22 s instead of 4.
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
        if application_id != APPLICATION_ID:  # set once: a write on every open made each close a checkpoint
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, model TEXT, created REAL, record TEXT)")
        db.execute(CREATE_ANSWERS)
        db.commit()
    except sqlite3.Error as exc:
        raise ValueError(f"cache={str(path)!r}: SQLite cannot open it as a cache ({exc}). {WHAT_TO_PASS}") from exc


def select_keys(db: sqlite3.Connection, query: str, keys: list[str]) -> list[tuple[Any, ...]]:
    """``query`` (a ``SELECT … FROM`` a table) for the rows of ``keys``: one statement per :data:`KEYS_PER_QUERY`."""
    rows: list[tuple[Any, ...]] = []
    if not keys:
        return rows
    for start in range(0, len(keys), KEYS_PER_QUERY):
        chunk = keys[start:start + KEYS_PER_QUERY]
        rows += db.execute(f"{query} WHERE key IN ({','.join('?' * len(chunk))})", chunk).fetchall()
    return rows


def move_to_columns(db: sqlite3.Connection, records: Mapping[str, Mapping[str, Any]]) -> None:
    """Move rows' records read from JSON to the columns (in one commit), so the next re-run reads them as such."""
    moved = [key for key, record in records.items() if record.keys() == ANSWER_SET]
    if not moved:
        return
    try:
        models = dict(select_keys(db, "SELECT key, model FROM responses", moved))
        created = time.time()
        db.executemany(INSERT_ANSWER, [
            (key, models.get(key), created, *(records[key][f] for f in ANSWER_FIELDS)) for key in moved
        ])
        db.executemany("DELETE FROM responses WHERE key = ?", [(key,) for key in moved])
        db.commit()
    except sqlite3.Error:  # a read-only or full disk: they are read as JSON again next time
        db.rollback()
