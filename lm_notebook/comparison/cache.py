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

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

# Bump when the stored record's shape changes: old entries then simply miss.
KEY_VERSION = 1
# Marks an SQLite file as this cache ("lmnb"), so a database of anyone else's is never written to.
APPLICATION_ID = 0x6C6D6E62
_COLUMNS = ("key", "model", "created", "record")
# A compare row's record (rows.Outcome.record()) is stored one field a column in this table, so a cached re-run reads
# plain tuples (no JSON to parse); any other record (a judge's, an embedding) stays JSON in ``responses``. The
# table's name is its version: bump it when the fields change (the old table's rows then miss, as old keys do).
ANSWER_FIELDS = (
    "status", "response", "reasoning", "finish_reason", "error", "error_type", "ttft_s", "latency_s", "tokens_per_s",
    "prompt_tokens", "completion_tokens", "started_at", "served_model", "attempts", "cold", "tool_calls",
    "tool_errors", "rounds", "server_ttft_s", "server_tokens_per_s", "reasoning_tokens", "server_load_s",
)
_ANSWER_SET = frozenset(ANSWER_FIELDS)
_ANSWERS = "answers_1"
# no declared types: SQLite keeps each value as given (an int stays an int, 1.0 stays a float)
_CREATE_ANSWERS = (
    f"CREATE TABLE IF NOT EXISTS {_ANSWERS} (key TEXT PRIMARY KEY, model TEXT, created REAL, "
    f"{', '.join(ANSWER_FIELDS)})"
)
_INSERT_ANSWER = (
    f"INSERT OR REPLACE INTO {_ANSWERS} (key, model, created, {', '.join(ANSWER_FIELDS)}) "
    f"VALUES ({', '.join('?' * (3 + len(ANSWER_FIELDS)))})"
)
_SELECT_ANSWERS = f"SELECT {', '.join(ANSWER_FIELDS)}, key FROM {_ANSWERS}"
_SQLITE_HEADER = b"SQLite format 3\x00"
# SQLite before 3.32 allows at most 999 parameters in one statement
_KEYS_PER_QUERY = 900
_WHAT_TO_PASS = "Pass a file path of its own, e.g. cache='answers.sqlite', or cache=True for the default location."


def default_cache_path() -> Path:
    """``$LM_NOTEBOOK_CACHE_DIR/compare.sqlite``, else the user cache directory (XDG on Linux)."""
    base = os.environ.get("LM_NOTEBOOK_CACHE_DIR")
    if base:
        return Path(base).expanduser() / "compare.sqlite"
    xdg = os.environ.get("XDG_CACHE_HOME")
    root = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return root / "lm_notebook" / "compare.sqlite"


def is_deterministic(params: Mapping[str, Any]) -> bool:
    """Temperature 0 or a fixed seed: the same request gives the same answer."""
    temperature = params.get("temperature")
    return params.get("seed") is not None or (temperature is not None and float(temperature) == 0.0)


def _same_number(value: Any) -> Any:
    """0 and 0.0 (``-t 0`` in a magic, ``temperature=0.0`` in code) are one request: key numbers as floats."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


# one encoder for every key: json.dumps with options makes a new one per call (most of a short value's cost)
_json = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=repr).encode
_text = json.encoder.encode_basestring  # a str as the encoder writes it (ensure_ascii=False)
_KEY_END = f',"v":{KEY_VERSION}}}'  # the key's text after the repeat number
_Id = TypeVar("_Id", bound=Hashable)  # what names a request's messages (compare: its prompt's index)


def _messages_json(messages: Sequence[Mapping[str, Any]]) -> str:
    """``_json`` of the messages (byte for byte), laid out by hand when every message holds only text: the encoder's
    set-up was most of a short prompt's cost."""
    parts = []
    for message in messages:
        role, content = message.get("role"), message.get("content")
        if type(role) is str and type(content) is str and len(message) == 2:  # the usual message: no loop, no sort
            parts.append(f'"content":{_text(content)},"role":{_text(role)}')
        elif all(type(k) is str and type(v) is str for k, v in message.items()):
            parts.append(",".join(f"{_text(k)}:{_text(message[k])}" for k in sorted(message)))
        else:
            return _json([dict(m) for m in messages])
    return "[{" + "},{".join(parts) + "}]" if parts else "[]"


class CacheKeys:
    """:func:`cache_key` for many requests with the same parameters: each distinct messages list (named by
    ``messages_id``) and each model's part are serialised once — a cached re-run of 1,000 rows makes 1,000 keys.

    The key's text is the JSON of ``{"format", "messages", "model", "params", "quantization", "repeat", "v"}`` with
    sorted keys, laid out piece by piece (the pieces are the same JSON), so keys made before still hit.
    """

    def __init__(self, params: Mapping[str, Any]) -> None:
        self._params = _json({k: _same_number(v) for k, v in sorted(params.items()) if v is not None})
        self._messages: dict[Hashable, str] = {}
        self._models: dict[tuple[str, str | None, str | None], tuple[str, str]] = {}

    def key(
        self, *, model: str, messages: Sequence[Mapping[str, Any]], messages_id: Hashable, repeat: int,
        quantization: str | None = None, format: str | None = None,
    ) -> str:
        return self.keys([(model, messages_id, repeat)], lambda _: messages, lambda _: (quantization, format))[0]

    def keys(
        self,
        requests: Iterable[tuple[str, _Id, int]],
        messages: Callable[[_Id], Sequence[Mapping[str, Any]]],
        listing: Callable[[str], tuple[str | None, str | None]],
    ) -> list[str]:
        """:meth:`key` of each ``(model, messages_id, repeat)`` in one loop (a cached re-run's 1,000 rows):
        ``messages(messages_id)`` is a request's messages, ``listing(model)`` its model's (quantization, format)."""
        sha256 = hashlib.sha256
        said_of = self._messages
        parts_of: dict[str, tuple[str, str]] = {}
        out = []
        for model, messages_id, repeat in requests:
            said = said_of.get(messages_id)
            if said is None:
                said = said_of[messages_id] = _messages_json(messages(messages_id))
            parts = parts_of.get(model)
            if parts is None:
                parts = parts_of[model] = self._parts(model, *listing(model))
            out.append(sha256(f"{parts[0]}{said}{parts[1]}{int(repeat)}{_KEY_END}".encode()).hexdigest())
        return out

    def _parts(self, model: str, quantization: str | None, format: str | None) -> tuple[str, str]:
        """The key's text before and after the messages, up to the repeat number."""
        parts = self._models.get((model, quantization, format))
        if parts is None:
            parts = self._models[(model, quantization, format)] = (
                f'{{"format":{_json(format)},"messages":',
                f',"model":{_json(model)},"params":{self._params},"quantization":{_json(quantization)},"repeat":',
            )
        return parts


def cache_key(
    *,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
    repeat: int,
    quantization: str | None = None,
    format: str | None = None,
) -> str:
    """A stable hash of one request (``None`` parameters are left out, as they are not sent)."""
    return CacheKeys(params).key(
        model=model, messages=messages, messages_id=None, repeat=repeat, quantization=quantization, format=format
    )


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
        raise ValueError(f"cache={str(path)!r} is not a regular file. {_WHAT_TO_PASS}")
    existing = path.is_file() and path.stat().st_size > 0
    if existing:
        with path.open("rb") as f:
            header = f.read(len(_SQLITE_HEADER))
        if header != _SQLITE_HEADER:
            raise ValueError(
                f"cache={str(path)!r} is a file that is not an answer cache (not an SQLite database); it is left "
                f"as it is. {_WHAT_TO_PASS}"
            )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cache={str(path)!r}: cannot make its folder ({exc}). {_WHAT_TO_PASS}") from exc
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
            f"cache={str(path)!r} cannot be read as an answer cache ({exc}); it is left as it is. {_WHAT_TO_PASS}"
        ) from exc
    ours = tables in (["responses"], ["responses", _ANSWERS]) and columns == _COLUMNS
    if application_id == APPLICATION_ID or (application_id == 0 and ours):
        return int(application_id)
    what = f"its tables: {', '.join(tables)}" if tables else "another application's"
    raise ValueError(
        f"cache={str(path)!r} is an SQLite database that is not an answer cache ({what}); it is left as it is. "
        f"{_WHAT_TO_PASS}"
    )


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
                f"cache={str(self.path)!r}: SQLite cannot open it as a cache ({exc}). {_WHAT_TO_PASS}"
            ) from exc
        try:
            application_id = check_database(self._db, self.path) if isinstance(self.path, Path) and existing else 0
            self._create(application_id)
        except BaseException:
            self._db.close()
            raise

    def _create(self, application_id: int) -> None:
        """Our settings, id and tables (``application_id``: the file's, 0 for a new one)."""
        try:
            if isinstance(self.path, Path):
                # a commit per answer must not wait for the disk: in write-ahead-log mode with synchronous=NORMAL a
                # commit is atomic and survives the process, but only a checkpoint waits for an fsync (a power cut
                # may lose the last answers, never the file). Each commit waiting for the disk (~15 ms) on compare's
                # event loop held every stream in flight: 1,000 short rows took 22 s instead of 4.
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute("PRAGMA synchronous = NORMAL")
            if application_id != APPLICATION_ID:  # set once: a write on every open made each close a checkpoint
                self._db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, model TEXT, created REAL, record TEXT)"
            )
            self._db.execute(_CREATE_ANSWERS)
            self._db.commit()
        except sqlite3.Error as exc:
            raise ValueError(
                f"cache={str(self.path)!r}: SQLite cannot open it as a cache ({exc}). {_WHAT_TO_PASS}"
            ) from exc

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r}, deterministic_only={self.deterministic_only})"

    def accepts(self, params: Mapping[str, Any]) -> bool:
        """Whether a request with these parameters may be cached."""
        return not self.deterministic_only or is_deterministic(params)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored records of ``keys`` (key → record; a key not stored, or damaged, is left out): one query per
        :data:`_KEYS_PER_QUERY` keys, not one per key, so a cached re-run of many rows reads them at once. A row's
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
            legacy = {key: _parsed(blob) for key, blob in self._select("SELECT key, record FROM responses", rest)}
            older = {key: record for key, record in legacy.items() if record is not None}
            self._migrate(older)
        return rows, older

    def _rows(self, wanted: list[str]) -> dict[str, tuple[Any, ...]]:
        """The stored rows of ``wanted`` (key → row). A table holding not many more rows than asked for (a re-run
        of what filled it) is read in one pass and filtered here: about half the time of a look-up a key.

        Its size is bounded by its largest rowid, one step down the table's b-tree: a ``COUNT(*)`` walked every row
        stored (all notebooks' answers) on each call. A new row's rowid is one more than the largest, so the bound is
        never below the count: when it errs (rows replaced or deleted), it errs towards the look-ups."""
        if not wanted:
            return {}
        (largest,) = self._db.execute(f"SELECT MAX(rowid) FROM {_ANSWERS}").fetchone()
        if (largest or 0) <= 2 * len(wanted):
            keys = set(wanted)
            return {row[-1]: row for row in self._db.execute(_SELECT_ANSWERS) if row[-1] in keys}
        return {row[-1]: row for row in self._select(_SELECT_ANSWERS, wanted)}

    def _select(self, query: str, keys: list[str]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        if not keys:
            return rows
        for start in range(0, len(keys), _KEYS_PER_QUERY):
            chunk = keys[start:start + _KEYS_PER_QUERY]
            rows += self._db.execute(f"{query} WHERE key IN ({','.join('?' * len(chunk))})", chunk).fetchall()
        return rows

    def _migrate(self, records: Mapping[str, Mapping[str, Any]]) -> None:
        """Move rows' records read from JSON to the columns (in one commit), so the next re-run reads them as such."""
        moved = [key for key, record in records.items() if record.keys() == _ANSWER_SET]
        if not moved:
            return
        try:
            models = dict(self._select("SELECT key, model FROM responses", moved))
            created = time.time()
            self._db.executemany(_INSERT_ANSWER, [
                (key, models.get(key), created, *(records[key][f] for f in ANSWER_FIELDS)) for key in moved
            ])
            self._db.executemany("DELETE FROM responses WHERE key = ?", [(key,) for key in moved])
            self._db.commit()
        except sqlite3.Error:  # a read-only or full disk: they are read as JSON again next time
            self._db.rollback()

    def put(self, key: str, record: Mapping[str, Any], *, model: str | None = None) -> None:
        with self._lock:
            if record.keys() == _ANSWER_SET:
                try:
                    self._db.execute(_INSERT_ANSWER, (key, model, time.time(), *(record[f] for f in ANSWER_FIELDS)))
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
            self._db.execute(f"DELETE FROM {_ANSWERS} WHERE key = ?", (key,))
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute(
                f"SELECT (SELECT COUNT(*) FROM responses) + (SELECT COUNT(*) FROM {_ANSWERS})"
            ).fetchone()
        return int(count)

    def clear(self, model: str | None = None) -> None:
        """Forget every answer (or one model's)."""
        with self._lock:
            for table in ("responses", _ANSWERS):
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
