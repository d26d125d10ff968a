"""The display tests' shared fixture: IPython's display publisher replaced by a recording one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from IPython.core.interactiveshell import InteractiveShell
from stream_view_doubles import RecordingPublisher


@pytest.fixture
def publisher() -> Iterator[RecordingPublisher]:
    shell = InteractiveShell.instance()
    saved = shell.display_pub
    shell.display_pub = RecordingPublisher()
    try:
        yield shell.display_pub
    finally:
        shell.display_pub = saved
