"""The display tests' shared fixture: IPython's display publisher replaced by a recording one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from stream_view_doubles import RecordingPublisher, installed_publisher


@pytest.fixture
def publisher() -> Iterator[RecordingPublisher]:
    with installed_publisher(RecordingPublisher()) as pub:
        yield pub
