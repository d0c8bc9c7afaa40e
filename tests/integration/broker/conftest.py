"""The broker tests run in anyio's event loop (asyncio), as nats-py needs; the NATS servers come
from tests/integration/conftest.py."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
