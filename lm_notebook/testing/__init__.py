"""A faithful fake LM Studio server for tests, demos and CI: real HTTP on loopback, LM Studio's quirks on demand.

>>> from lm_notebook.testing import MockLMStudioServer
>>> with MockLMStudioServer() as server:          # doctest: +SKIP
...     print(server.url)                         # http://127.0.0.1:<free port>

Installing the package also installs a pytest plugin with the fixtures ``lmstudio_mock`` and ``lmstudio_client``.
"""

from lm_notebook.testing.catalogue import DEMO_PACING, ModelSpec, Pacing, default_models, demo_models, load_models_file
from lm_notebook.testing.clock import Clock, LoopClock, ManualClock
from lm_notebook.testing.cors import CorsPolicy
from lm_notebook.testing.faults import FAULT_KINDS, Fault, Quirks
from lm_notebook.testing.recording import CHAT_PATHS, RecordedRequest
from lm_notebook.testing.replies import count_tokens, tokenize
from lm_notebook.testing.scheduler import Counters, ModelCounters
from lm_notebook.testing.server import MockLMStudioServer

__all__ = [
    "CHAT_PATHS",
    "DEMO_PACING",
    "FAULT_KINDS",
    "Clock",
    "CorsPolicy",
    "Counters",
    "Fault",
    "LoopClock",
    "ManualClock",
    "MockLMStudioServer",
    "ModelCounters",
    "ModelSpec",
    "Pacing",
    "Quirks",
    "RecordedRequest",
    "count_tokens",
    "default_models",
    "demo_models",
    "load_models_file",
    "tokenize",
]
