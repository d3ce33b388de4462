"""A separate OS process that fires tab claims at one session, round by round."""

from __future__ import annotations

import asyncio
from typing import Any

from sessionwatch.backends.base import Claim, Timeouts
from sessionwatch.backends.redis import RedisBackend
from sessionwatch.core.events import Device

TIMEOUTS = Timeouts(idle=1_800_000, absolute=43_200_000, refresh=60_000, tombstone=3_600_000)
BY = Device(browser="Worker", os="Linux", place="", at=0)


def run(
    url: str, prefix: str, session_id: str, rounds: int, per_round: int, barrier: Any, results: Any
) -> None:
    """Each round: wait for everyone, fire ``per_round`` concurrent claims, report gens."""

    async def main() -> None:
        backend = RedisBackend(url, key_prefix=prefix)
        await backend.connect()
        try:
            for _ in range(rounds):
                barrier.wait(timeout=30)
                claims = await asyncio.gather(
                    *(
                        backend.claim(
                            session_id, BY, exclusive=True, timeouts=TIMEOUTS, now=1_800_000_000_000
                        )
                        for _ in range(per_round)
                    )
                )
                results.put([c.gen for c in claims if isinstance(c, Claim)])
        finally:
            await backend.disconnect()

    asyncio.run(main())
