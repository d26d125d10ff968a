"""A SQLite cache of ``compare`` answers, so a re-run (after an interrupt, or of the same notebook) skips what is done.

The key is a hash of everything that decides the answer: the model id and its quantization and format, the full
messages, every request parameter, and the repeat number (repeats are separate samples). Only deterministic requests
(``temperature == 0`` or a ``seed``) are cached unless the cache is opened with ``deterministic_only=False``; only
complete answers are stored (never errors or interrupted rows).

>>> cache = ResponseCache(":memory:")
>>> key = cache_key(model="m", quantization="Q4_K_M", messages=[{"role": "user", "content": "hi"}],
...                 params={"temperature": 0}, repeat=0)
>>> cache.put(key, {"response": "hello"}); cache.get(key)
{'response': 'hello'}
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# the keys (cache_keys.py) and the file and its tables (cache_schema.py), importable from here as before
from lm_notebook.comparison.cache_keys import KEY_VERSION, CacheKeys, cache_key
from lm_notebook.comparison.cache_schema import (
    ANSWER_FIELDS,
    ANSWER_SET,
    ANSWERS,
    APPLICATION_ID,
    INSERT_ANSWER,
    SELECT_ANSWERS,
    WHAT_TO_PASS,
    check_cache_file,
    check_database,
    create_tables,
    default_cache_path,
    move_to_columns,
    select_keys,
)

__all__ = [
    "ANSWER_FIELDS", "APPLICATION_ID", "KEY_VERSION", "CacheKeys", "ResponseCache", "cache_key", "check_cache_file",
    "check_database", "default_cache_path", "is_deterministic", "open_cache",
]


def is_deterministic(params: Mapping[str, Any]) -> bool:
    """Temperature 0 or a fixed seed: the same request gives the same answer."""
    temperature = params.get("temperature")
    return params.get("seed") is not None or (temperature is not None and float(temperature) == 0.0)


_DECODER = json.JSONDecoder()


def _parsed(blob: object) -> dict[str, Any] | None:
    """A stored record; None for a damaged one (a miss, not a crash)."""
    if not isinstance(blob, str):
        return None
    try:
        # the decoder itself: json.loads' own checks cost as much again as the parse of a small record
        record, end = _DECODER.raw_decode(blob)
    except ValueError:
        return None
    return record if isinstance(record, dict) and end == len(blob) else None


class ResponseCache:
    """Answers on disk, keyed by :func:`cache_key`. Safe to share between threads; writes are committed at once
    (write-ahead log: a commit does not wait for the disk).

    ``path``: a file (created with its directory), ``":memory:"``, or None for :func:`default_cache_path`; a
    directory, or a file that is not such a cache (other bytes, another SQLite database), is refused with a
    ``ValueError`` and left untouched.
    ``deterministic_only=False`` caches sampled answers too (a re-run then shows the same sample).
    """

    def __init__(self, path: str | Path | None = None, *, deterministic_only: bool = True) -> None:
        self.path: Path | str
        if path is None:
            self.path = default_cache_path()
        elif str(path) == ":memory:":
            self.path = ":memory:"
        else:
            self.path = Path(path).expanduser()
        existing = isinstance(self.path, Path) and check_cache_file(self.path)
        self.deterministic_only = deterministic_only
        self._lock = threading.Lock()
        try:
            # opened once: an existing file's tables are looked at on this connection, before anything is written
            self._db = sqlite3.connect(str(self.path), check_same_thread=False)
        except sqlite3.Error as exc:
            raise ValueError(
                f"cache={str(self.path)!r}: SQLite cannot open it as a cache ({exc}). {WHAT_TO_PASS}"
            ) from exc
        try:
            application_id = check_database(self._db, self.path) if isinstance(self.path, Path) and existing else 0
            create_tables(self._db, self.path, application_id)
        except BaseException:
            self._db.close()
            raise

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r}, deterministic_only={self.deterministic_only})"

    def accepts(self, params: Mapping[str, Any]) -> bool:
        """Whether a request with these parameters may be cached."""
        return not self.deterministic_only or is_deterministic(params)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored records of ``keys`` (key → record; a key not stored, or damaged, is left out): one query per
        :data:`KEYS_PER_QUERY` keys, not one per key, so a cached re-run of many rows reads them at once. A row's
        record stored as JSON (by a version before its columns) is moved to the columns when read."""
        rows, records = self.answers(keys)
        found: dict[str, dict[str, Any]] = {}
        for key, row in rows.items():
            record = found[key] = dict(zip(ANSWER_FIELDS, row, strict=False))  # the key after them
            record["cold"] = bool(record["cold"])  # SQLite keeps a bool as 0 or 1
        return {**found, **records}

    def answers(self, keys: Sequence[str]) -> tuple[dict[str, tuple[Any, ...]], dict[str, dict[str, Any]]]:
        """What :meth:`get_many` reads, as read: rows' records stored in the columns (key → their values in
        :data:`ANSWER_FIELDS` order, then the key; ``cold`` as SQLite keeps it, 0 or 1), and the other records
        (key → record, from JSON). A cached re-run takes the values as they are, with no dict made per row."""
        wanted = list(dict.fromkeys(keys))
        with self._lock:
            # the key last: zip(ANSWER_FIELDS, row) stops before it
            rows = self._rows(wanted)
            rest = [key for key in wanted if key not in rows] if len(rows) < len(wanted) else []
            json_rows = select_keys(self._db, "SELECT key, record FROM responses", rest)
            legacy = {key: _parsed(blob) for key, blob in json_rows}
            older = {key: record for key, record in legacy.items() if record is not None}
            move_to_columns(self._db, older)
        return rows, older

    def _rows(self, wanted: list[str]) -> dict[str, tuple[Any, ...]]:
        """The stored rows of ``wanted`` (key → row). A table holding not many more rows than asked for (a re-run
        of what filled it) is read in one pass and filtered here: about half the time of a look-up a key.

        Its size is bounded by its largest rowid, one step down the table's b-tree: a ``COUNT(*)`` walked every row
        stored (all notebooks' answers) on each call. A new row's rowid is one more than the largest, so the bound is
        never below the count: when it errs (rows replaced or deleted), it errs towards the look-ups."""
        if not wanted:
            return {}
        (largest,) = self._db.execute(f"SELECT MAX(rowid) FROM {ANSWERS}").fetchone()
        if (largest or 0) <= 2 * len(wanted):
            keys = set(wanted)
            return {row[-1]: row for row in self._db.execute(SELECT_ANSWERS) if row[-1] in keys}
        return {row[-1]: row for row in select_keys(self._db, SELECT_ANSWERS, wanted)}

    def put(self, key: str, record: Mapping[str, Any], *, model: str | None = None) -> None:
        with self._lock:
            if record.keys() == ANSWER_SET:
                try:
                    self._db.execute(INSERT_ANSWER, (key, model, time.time(), *(record[f] for f in ANSWER_FIELDS)))
                    self._db.execute("DELETE FROM responses WHERE key = ?", (key,))
                    self._db.commit()
                    return
                except (sqlite3.InterfaceError, sqlite3.ProgrammingError, OverflowError):  # a value SQLite cannot
                    # hold as it is (a list, an int over 64 bits): the record is stored as JSON instead
                    self._db.rollback()
            blob = json.dumps(dict(record), ensure_ascii=False, default=str)
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, model, created, record) VALUES (?, ?, ?, ?)",
                (key, model, time.time(), blob),
            )
            self._db.execute(f"DELETE FROM {ANSWERS} WHERE key = ?", (key,))
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute(
                f"SELECT (SELECT COUNT(*) FROM responses) + (SELECT COUNT(*) FROM {ANSWERS})"
            ).fetchone()
        return int(count)

    def clear(self, model: str | None = None) -> None:
        """Forget every answer (or one model's)."""
        with self._lock:
            for table in ("responses", ANSWERS):
                if model is None:
                    self._db.execute(f"DELETE FROM {table}")
                else:
                    self._db.execute(f"DELETE FROM {table} WHERE model = ?", (model,))
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_cache(
    cache: bool | str | Path | ResponseCache | None, params: Mapping[str, Any] | None = None
) -> tuple[ResponseCache | None, bool]:
    """The cache for ``compare(cache=...)`` and whether ``compare`` opened it (and so must close it).

    ``params``: the requests' parameters; when a cache opened here would not take them (not deterministic), none is
    opened and nothing (no file, no folder) is created."""
    if cache is None or cache is False:
        return None, False
    if isinstance(cache, ResponseCache):
        return cache, False
    if (cache is True or isinstance(cache, (str, Path))) and params is not None and not is_deterministic(params):
        return None, False
    if cache is True:
        return ResponseCache(), True
    if isinstance(cache, (str, Path)):
        return ResponseCache(cache), True
    raise TypeError(f"cache must be None, True, a path or a ResponseCache, not {type(cache).__name__}.")
