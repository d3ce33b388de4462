"""The Python session-API client's part of issue 27, against a real ``sessionwatch
serve`` whose policy comes from the environment (``SESSIONWATCH_ON_LIMIT=ask``): the
409 of ``login`` carries the chooser's fields, ``complete_login`` applies the choice,
``reauthenticated`` renews the sign-in time ``/verify?max_age=`` checks."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from sessionwatch.client import AsyncSessionAPI, SessionAPI, SessionAPIError
from support.attacks import raw_request
from support.service_process import ServiceProcess

pytestmark = pytest.mark.multiprocess

API_KEY = "ask-client-test-key-0123456789abcdef"


async def test_the_client_completes_an_ask_sign_in_and_renews_step_up(redis_url: str) -> None:
    env = {
        "SESSIONWATCH_API_KEYS": API_KEY,
        "SESSIONWATCH_SESSIONS_PER_USER": "1",
        "SESSIONWATCH_ON_LIMIT": "ask",
    }
    with ServiceProcess(redis_url, key_prefix=f"ask:{uuid.uuid4().hex[:8]}:", env=env) as process:
        api = SessionAPI(process.url, API_KEY)
        first = await asyncio.to_thread(api.login, "olga", client_ip="198.51.100.1")
        with pytest.raises(SessionAPIError) as asked:
            await asyncio.to_thread(api.login, "olga", client_ip="198.51.100.2")
        assert asked.value.status == 409 and asked.value.code == "session_choice_required"
        body = asked.value.body
        assert [s["id"] for s in body["sessions"]] == [first["session"]]
        done = await asyncio.to_thread(api.complete_login, body["pending"], [first["session"]])
        assert done["evicted"] == [first["session"]] and done["user"] == "olga"
        cookie = f"{done['cookie']['name']}={done['cookie']['value']}"

        async def verify() -> int:
            headers = [("X-Original-Method", "GET"), ("X-Original-URI", "/"), ("Cookie", cookie)]
            answer = await raw_request(
                process.port, "GET", "/_sessionwatch/verify?max_age=1", headers, b""
            )
            return answer.status

        assert await verify() == 204
        await asyncio.sleep(2.1)  # past the one-second window (a real service: a real clock)
        assert await verify() == 401
        renewed = await AsyncSessionAPI(process.url, API_KEY).reauthenticated(cookie=cookie)
        assert renewed == {"session": done["session"], "user": "olga"}
        assert await verify() == 204
