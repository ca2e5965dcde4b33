"""The ledger's worker as a process of its own, to be killed in tests.

    LEDGER_HOLD=<review id> LEDGER_HELD=<file> SAMTAL_LEDGER_...=... \
        python -m tests.chassis.ledger_worker

With LEDGER_HOLD the handler, on that review, touches LEDGER_HELD and then waits forever
inside its batch's transaction.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import uvicorn

from chassis.app import build
from tests.chassis.ledger import HOLD, LEDGER, LedgerSettings


async def _hold_forever() -> None:
    Path(os.environ["LEDGER_HELD"]).touch()
    await asyncio.Event().wait()


if __name__ == "__main__":
    if "LEDGER_HOLD" in os.environ:
        HOLD[uuid.UUID(os.environ["LEDGER_HOLD"])] = _hold_forever
    app = build(LEDGER, LedgerSettings(), "worker")
    uvicorn.run(
        app, host="127.0.0.1", port=int(os.environ.get("LEDGER_PORT", "0")), log_level="warning"
    )
