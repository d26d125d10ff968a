"""Which server runs which model's rows next, when a comparison spans several (``compare(endpoints=...)``).

Each model of the comparison is a :class:`Lane`: its rows not yet sent (one deque, shared by every server working on
it), the servers able to serve it and those working on it now. A server that is free asks :meth:`WorkPool.next_lane`:

1. a lane nobody works on yet — first those fewest servers can run (a model only it has is its job), then those
   loaded on it, then in the order given: so two servers with three models take one model each, loading each once;
2. else it steals from a lane others work on, when that is worth it: at once if the model is loaded on it; else only
   when the rows left would keep the workers there busy for more waves than its own load would cost (estimated from
   the answers so far): a last wave is not worth a model load.

A server that goes down leaves its lanes; its rows in flight come back to the front of their lane (for another
server), and a lane no server is left for fails its rows. Pure bookkeeping on one event loop: no I/O here.
"""

from __future__ import annotations

import asyncio
import math
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from lm_notebook.comparison.rows import Outcome
from lm_notebook.comparison.schedule import DEFAULT_SLOTS, RequestSpec

# With nothing measured yet, steal from a lane when at least this many waves are left for the servers on it.
BLIND_STEAL_WAVES = 3


@dataclass
class Lane:
    """One model of the comparison (``label`` as the user gave it, ``model`` the id sent to the server)."""

    label: str
    model: str
    pending: deque[RequestSpec]
    servers: list[str]  # endpoint names able to run it, still up
    order: int = 0
    working: dict[str, int] = field(default_factory=dict)  # endpoint name → its slots on this lane
    latencies: list[float] = field(default_factory=list)  # of the answers so far (warm ones)
    loads: list[float] = field(default_factory=list)  # first-token waits of cold answers (a load, roughly)


class WorkPool:
    """The lanes, the models loaded on each server, and a signal for servers waiting for work."""

    def __init__(self, lanes: Sequence[Lane], loaded: dict[str, set[str]]) -> None:
        self.lanes = {lane.label: lane for lane in lanes}
        self.loaded = loaded  # endpoint name → model ids loaded there (updated as servers load models)
        self.attempts: dict[int, int] = {}  # row index → attempts made on servers that went down
        self.endpoint_of: dict[int, str] = {}  # row index → the server whose answer (or error) the row holds
        self._changed: asyncio.Event | None = None

    # --- choosing -------------------------------------------------------------------------------------------------
    def next_lane(self, endpoint: str) -> Lane | None:
        """The lane ``endpoint`` should work on now, or None (nothing worth taking)."""
        mine = [lane for lane in self.lanes.values() if endpoint in lane.servers and lane.pending]
        free = [lane for lane in mine if not lane.working]
        if free:
            return min(free, key=lambda lane: (len(lane.servers), not self._loaded_on(endpoint, lane), lane.order))
        worth = [lane for lane in mine if endpoint not in lane.working and self._worth_stealing(endpoint, lane)]
        if not worth:
            return None
        return max(worth, key=lambda lane: (self._loaded_on(endpoint, lane), self._waves_left(lane), -lane.order))

    def _loaded_on(self, endpoint: str, lane: Lane) -> bool:
        return lane.model in self.loaded.get(endpoint, set())

    @staticmethod
    def _waves_left(lane: Lane) -> int:
        slots = sum(lane.working.values()) or DEFAULT_SLOTS
        return math.ceil(len(lane.pending) / slots)

    def _worth_stealing(self, endpoint: str, lane: Lane) -> bool:
        if self._loaded_on(endpoint, lane):
            return True
        waves = self._waves_left(lane)
        wave = statistics.median(lane.latencies) if lane.latencies else None
        loads = lane.loads or [x for other in self.lanes.values() for x in other.loads]
        load = max(loads) if loads else None
        if wave is None or load is None:
            return waves >= BLIND_STEAL_WAVES
        # the rows left take the servers there `waves` more waves; joining costs a load, then shares them
        return (waves - 1) * wave > load

    # --- bookkeeping ----------------------------------------------------------------------------------------------
    def join(self, lane: Lane, endpoint: str, slots: int) -> None:
        lane.working[endpoint] = slots

    def leave(self, lane: Lane, endpoint: str) -> None:
        lane.working.pop(endpoint, None)
        self.notify()

    def others_serve(self, label: str, endpoint: str) -> bool:
        """Whether a server other than ``endpoint`` can still run ``label``'s rows."""
        return any(s != endpoint for s in self.lanes[label].servers)

    def requeue(self, label: str, spec: RequestSpec, attempts: int) -> None:
        """A row that was in flight on a server that went down: first in line for another server."""
        self.attempts[spec.index] = self.attempts.get(spec.index, 0) + attempts
        self.lanes[label].pending.appendleft(spec)
        self.notify()

    def settled(self, label: str, endpoint: str, index: int, outcome: Outcome) -> None:
        self.endpoint_of[index] = endpoint
        lane = self.lanes[label]
        if outcome.status == "ok" and outcome.latency_s is not None:
            if outcome.cold and outcome.ttft_s is not None:
                lane.loads.append(outcome.ttft_s)
            else:
                lane.latencies.append(outcome.latency_s)
        if outcome.status == "ok":
            self.loaded.setdefault(endpoint, set()).add(lane.model)
        self.notify()

    def drop_server(self, label: str, endpoint: str) -> list[RequestSpec]:
        """``endpoint`` cannot run ``label`` (its breaker tripped): the rows no server is left for (taken out)."""
        lane = self.lanes[label]
        if endpoint in lane.servers:
            lane.servers.remove(endpoint)
        self.notify()
        return self._orphans(lane)

    def endpoint_down(self, endpoint: str) -> dict[str, list[RequestSpec]]:
        """``endpoint`` stopped answering: it leaves every lane; the rows no server is left for, by label."""
        orphans: dict[str, list[RequestSpec]] = {}
        self.loaded.pop(endpoint, None)
        for lane in self.lanes.values():
            lane.working.pop(endpoint, None)
            if endpoint in lane.servers:
                lane.servers.remove(endpoint)
                left = self._orphans(lane)
                if left:
                    orphans[lane.label] = left
        self.notify()
        return orphans

    @staticmethod
    def _orphans(lane: Lane) -> list[RequestSpec]:
        if lane.servers:
            return []
        left = list(lane.pending)
        lane.pending.clear()
        return left

    # --- waiting --------------------------------------------------------------------------------------------------
    def may_get_work(self, endpoint: str) -> bool:
        """Whether work may still come to ``endpoint``: a lane it serves has rows waiting, or rows in flight on
        another server (which, going down, would hand them back)."""
        return any(
            endpoint in lane.servers and (lane.pending or any(w != endpoint for w in lane.working))
            for lane in self.lanes.values()
        )

    def notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def changed(self) -> None:
        """Wait until a row settles or comes back, or a server leaves a lane."""
        if self._changed is None:
            self._changed = asyncio.Event()
        await self._changed.wait()
