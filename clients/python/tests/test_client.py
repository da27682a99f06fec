"""The Python client against a real server (started by ``test/python-client.test.ts``).

Environment: ``DERIVER_URL`` (the server's GraphQL URL, auth on), ``DERIVER_TOKEN`` (a key of
workspace ``py``), ``DERIVER_OTHER_TOKEN`` (a key of another workspace). The server's handler holds
any task whose message says ``hold`` until the run ends, and finishes the others at once.
"""

from __future__ import annotations

import asyncio
import http.server
import os
import threading
import unittest
import uuid
from unittest import mock

from deriver_live import (
    AddMessagesResult,
    DeriverLive,
    DeriverLiveError,
    DeriverLiveTimeout,
    DeriverStatus,
)
from deriver_live.aio import AsyncDeriverLive

URL = os.environ["DERIVER_URL"]
TOKEN = os.environ["DERIVER_TOKEN"]
OTHER_TOKEN = os.environ["DERIVER_OTHER_TOKEN"]


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class ClientTest(unittest.TestCase):
    def setUp(self) -> None:
        self.client = DeriverLive(URL, token=TOKEN, workspace_id="py")

    def test_add_messages_then_wait_for_them(self) -> None:
        sid = fresh("chat")
        alice = self.client.peer("alice")
        self.client.upsert_session(sid, [alice.id, {"peer_id": "bob", "observe_others": True}])
        sent = self.client.session(sid).add_messages([alice.message("hello"), ("alice", "how are you?")])
        self.assertIsInstance(sent, AddMessagesResult)
        self.assertEqual([m.content for m in sent.messages], ["hello", "how are you?"])
        self.assertEqual([m.seq for m in sent.messages], [1, 2])
        self.assertEqual(sent.enqueued_tasks, 4)  # alice's own unit and bob observing her
        done = self.client.wait_for_messages(sent, timeout=60)
        self.assertTrue(done.done)
        self.assertEqual((done.total, done.completed, done.failed, done.pending), (4, 4, 0, 0))
        self.assertEqual([m.message_id for m in done.messages], sent.message_ids)
        only_bob = self.client.get_message_derivation(sent.message_ids, observer_id="bob")
        self.assertEqual(only_bob.total, 2)

    def test_wait_for_idle_and_the_status_of_a_session(self) -> None:
        sid = fresh("idle")
        session = self.client.session(sid)
        session.add_peers(["carol"])
        session.add_messages([("carol", "one"), ("carol", "two"), ("carol", "three")])
        idle = session.wait_for_idle(timeout=60)
        self.assertIsInstance(idle, DeriverStatus)
        self.assertTrue(idle.idle)
        self.assertEqual((idle.total_work_units, idle.completed_work_units), (3, 3))
        self.assertEqual(idle.derived_through_seq, 3)
        self.assertIsNone(idle.sessions)
        # Honcho's name, pushed: the same answer.
        self.assertEqual(session.poll_deriver_status(timeout=60), idle)
        whole = self.client.get_deriver_status()
        self.assertIn(sid, whole.sessions or {})
        self.assertEqual(whole.sessions[sid].completed_work_units, 3)  # type: ignore[index]
        info = session.get()
        assert info is not None
        self.assertEqual((info.id, info.message_count, [p.peer_id for p in info.peers]), (sid, 3, ["carol"]))

    def test_watch_pushes_each_change(self) -> None:
        sid = fresh("watch")
        session = self.client.session(sid)
        session.add_peers(["dave"])
        watch = session.watch_deriver_status(coalesce_ms=0, timeout=60)
        try:
            first = next(watch)
            self.assertEqual(first.total_work_units, 0)
            session.add_messages([("dave", "x"), ("dave", "y")])
            seen = [first]
            for status in watch:
                seen.append(status)
                if status.completed_work_units == 2:
                    break
            self.assertEqual(seen[-1].total_work_units, 2)
            self.assertTrue(any(s.total_work_units == 2 and not s.idle for s in seen))
        finally:
            watch.close()

    def test_a_watch_ends_when_its_time_is_up(self) -> None:
        # The README's form: `for status in ....watch_deriver_status(timeout=...)` ends, no traceback.
        sid = fresh("watched")
        session = self.client.session(sid)
        session.add_peers(["gina"])
        seen = list(session.watch_deriver_status(timeout=0.5))
        self.assertEqual([s.total_work_units for s in seen], [0])

    def test_a_wait_that_runs_past_its_timeout(self) -> None:
        sid = fresh("held")
        session = self.client.session(sid)
        session.add_peers(["erin"])
        sent = session.add_messages([("erin", "hold")])
        with self.assertRaises(DeriverLiveTimeout) as caught:
            session.wait_for_idle(timeout=0.5)
        self.assertEqual(caught.exception.code, "TIMEOUT")
        with self.assertRaises(TimeoutError):  # also a builtin TimeoutError
            self.client.wait_for_messages(sent, timeout=0.5)

    def test_a_typo_in_a_session_id(self) -> None:
        # Counts of an unknown session are zero (as in Honcho); waiting on one is an error.
        self.assertEqual(self.client.get_deriver_status(session_id="no-such-session").total_work_units, 0)
        with self.assertRaises(DeriverLiveError) as caught:
            self.client.wait_for_idle(session_id="no-such-session", timeout=10)
        self.assertEqual(caught.exception.code, "NOT_FOUND")
        self.assertEqual(caught.exception.argument, "sessionId")
        self.assertIn("no-such-session", caught.exception.message)
        with self.assertRaises(DeriverLiveError) as added:
            self.client.add_messages("no-such-session", [("alice", "x")])
        self.assertEqual(added.exception.code, "NOT_FOUND")

    def test_bad_input_names_the_argument(self) -> None:
        sid = fresh("bad")
        self.client.upsert_session(sid, ["frank"])
        with self.assertRaises(DeriverLiveError) as caught:
            self.client.add_messages(sid, [])
        self.assertEqual(caught.exception.code, "BAD_USER_INPUT")
        self.assertEqual(caught.exception.argument, "messages")

    def test_keys(self) -> None:
        with self.assertRaises(DeriverLiveError) as anonymous:
            DeriverLive(URL, workspace_id="py").get_deriver_status()
        self.assertEqual(anonymous.exception.code, "UNAUTHENTICATED")
        with self.assertRaises(DeriverLiveError) as outsider:
            DeriverLive(URL, token=OTHER_TOKEN, workspace_id="py").get_deriver_status()
        self.assertEqual(outsider.exception.code, "FORBIDDEN")
        with self.assertRaises(DeriverLiveError) as watched:
            DeriverLive(URL, token=OTHER_TOKEN, workspace_id="py").wait_for_idle(timeout=10)
        self.assertEqual(watched.exception.code, "FORBIDDEN")

    def test_asyncio_flavour(self) -> None:
        async def run() -> tuple[DeriverStatus, list[DeriverStatus]]:
            client = AsyncDeriverLive(URL, token=TOKEN, workspace_id="py")
            sid = fresh("async")
            await client.upsert_session(sid, ["gina"])
            sent = await client.add_messages(sid, [("gina", "hi")])
            await client.wait_for_messages(sent, timeout=60)
            statuses = []
            async for status in client.watch_deriver_status(session_id=sid, timeout=60):
                statuses.append(status)
                break
            return await client.get_deriver_status(session_id=sid), statuses

        status, watched = asyncio.run(run())
        self.assertEqual((status.total_work_units, status.completed_work_units), (1, 1))
        self.assertEqual(watched[0].completed_work_units, 1)


class SilentServerTest(unittest.TestCase):
    """A stream that goes silent (no event, no keep-alive) is a dead connection, deadline or not."""

    def test_a_silent_stream_is_a_network_error(self) -> None:
        release = threading.Event()

        class Silent(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the standard library's name)
                self.rfile.read(int(self.headers["content-length"]))
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                self.wfile.flush()
                release.wait(10)

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Silent)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            client = DeriverLive(f"http://127.0.0.1:{server.server_address[1]}/graphql")
            with mock.patch("deriver_live._transport.SILENCE_LIMIT", 0.3):
                with self.assertRaises(DeriverLiveError) as caught:
                    client.wait_for_idle(timeout=None)
            self.assertEqual(caught.exception.code, "NETWORK_ERROR")
            self.assertIn("sent nothing", caught.exception.message)
        finally:
            release.set()
            server.shutdown()
            server.server_close()


if __name__ == "__main__":
    unittest.main()
