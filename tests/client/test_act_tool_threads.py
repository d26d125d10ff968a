"""Which thread runs a plain (sync) tool on the async client: the caller's — the event loop's — by default, so
objects bound to a thread (a module-level ``sqlite3`` connection) work in ``act`` and ``compare``; a worker thread
only when the tool opts in with ``run_in_thread=True``."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from lm_notebook import LMStudioClient, compare
from lm_notebook.client import AsyncLMStudioClient
from lm_notebook.client.tools import tool_from_function
from lm_notebook.testing import MockLMStudioServer

QWEN = "qwen2.5-7b-instruct"


@pytest.fixture
def connection() -> Iterator[sqlite3.Connection]:
    con = sqlite3.connect(":memory:")  # bound to this (the test's) thread, as a notebook's module-level one
    con.execute("create table t(city text, pop int)")
    con.execute("insert into t values ('Paris', 2100000)")
    yield con
    con.close()


def population_tool(con: sqlite3.Connection, threads: list[str]) -> Any:
    def lookup(city: str) -> str:
        """Population of a city."""
        threads.append(threading.current_thread().name)
        (pop,) = con.execute("select pop from t where city = 'Paris'").fetchone()
        return f"{pop} people"

    return lookup


def test_the_async_client_runs_a_plain_tool_in_the_loops_thread(server: MockLMStudioServer,
                                                                connection: sqlite3.Connection) -> None:
    threads: list[str] = []

    async def main() -> Any:
        async with AsyncLMStudioClient(server.url, model=QWEN) as aclient:
            return await aclient.act("lookup it", [population_tool(connection, threads)])

    (call,) = asyncio.run(main()).calls
    assert (call.output, call.error) == ("2100000 people", None)
    assert threads == [threading.current_thread().name]


def test_compare_runs_a_plain_tool_with_a_thread_bound_connection(server: MockLMStudioServer,
                                                                  connection: sqlite3.Connection) -> None:
    threads: list[str] = []
    with LMStudioClient(server.url, model=QWEN) as client:
        df = compare(["lookup Paris"], [QWEN], client=client, tools=[population_tool(connection, threads)],
                     progress=False)
    assert df["tool_errors"].tolist() == [0] and df["tool_calls"].tolist() == [1]
    assert "2100000 people" in df["response"].iloc[0], df["response"].tolist()
    assert threads == [threading.current_thread().name]


def test_run_in_thread_opts_into_a_worker_thread(server: MockLMStudioServer) -> None:
    threads: list[str] = []

    def lookup(city: str) -> str:
        """Facts."""
        threads.append(threading.current_thread().name)
        return "found"

    async def main() -> Any:
        async with AsyncLMStudioClient(server.url, model=QWEN) as aclient:
            return await aclient.act("lookup it", [tool_from_function(lookup, run_in_thread=True)])

    (call,) = asyncio.run(main()).calls
    assert call.output == "found" and threads[0].startswith("lm_notebook-tool")


@pytest.mark.parametrize("client_kind", ["sync", "async"])
def test_run_in_thread_runs_the_function_in_a_daemon_thread_with_no_loop(server: MockLMStudioServer,
                                                                         client_kind: str) -> None:
    """On both clients: a worker thread that is a daemon (a Ctrl-C may abandon it; the process does not wait for it
    at exit) and runs no event loop, so the function may ``asyncio.run`` its own."""
    seen: list[tuple[str, bool]] = []

    def lookup(city: str) -> str:
        """Facts."""
        seen.append((threading.current_thread().name, threading.current_thread().daemon))

        async def inner() -> str:
            return "found"

        return asyncio.run(inner())

    tool = tool_from_function(lookup, run_in_thread=True)

    async def main() -> Any:
        async with AsyncLMStudioClient(server.url, model=QWEN) as aclient:
            return await aclient.act("lookup it", [tool])

    if client_kind == "async":
        result = asyncio.run(main())
    else:
        with LMStudioClient(server.url, model=QWEN) as client:
            result = client.act("lookup it", [tool])
    (call,) = result.calls
    assert (call.output, call.error) == ("found", None)
    ((name, daemon),) = seen
    assert name.startswith("lm_notebook-tool") and daemon and name != threading.main_thread().name
