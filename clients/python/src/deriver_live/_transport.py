"""GraphQL over HTTP (queries and mutations) and over Server-Sent Events (subscriptions), on the
standard library's ``http.client``: one connection per call, no WebSocket.

An SSE stream is the server's ``event: next`` / ``event: complete`` frames (GraphQL over SSE,
"distinct connections" mode). A deadline bounds the whole wait: the socket's timeout is set to
what is left of it before every read, so a silent server cannot hold a caller past it. Without a
deadline, a stream silent for ``SILENCE_LIMIT`` seconds is a dead connection: the server sends a
keep-alive comment every 12 s.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from typing import Any, Iterator, Mapping, Optional
from urllib.parse import urlsplit

from .errors import DeriverLiveError, DeriverLiveTimeout

#: Seconds without a byte (event or keep-alive) after which a stream counts as dead.
SILENCE_LIMIT = 45.0


class Transport:
    def __init__(self, url: str, token: Optional[str], timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be the server's http(s) GraphQL URL, like http://localhost:4000/graphql (got {url!r})")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = parts.path or "/graphql"
        if parts.query:
            self._path += "?" + parts.query
        self._token = token
        self._timeout = timeout

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=timeout)

    def _headers(self, accept: str) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": accept}
        if self._token:
            headers["authorization"] = f"Bearer {self._token}"
        return headers

    def execute(self, query: str, variables: Mapping[str, Any]) -> dict[str, Any]:
        """Runs a query or mutation; returns ``data`` or raises :class:`DeriverLiveError`."""
        conn = self._connect(self._timeout)
        try:
            body = json.dumps({"query": query, "variables": _present(variables)})
            conn.request("POST", self._path, body=body, headers=self._headers("application/graphql-response+json"))
            response = conn.getresponse()
            raw = response.read()
        except (socket.timeout, TimeoutError) as error:
            raise DeriverLiveTimeout(f"no answer within {self._timeout} s") from error
        except OSError as error:
            raise DeriverLiveError("NETWORK_ERROR", f"cannot reach {self._host}: {error}") from error
        finally:
            conn.close()
        return _data_of(_json(raw, response.status), response.status)

    def subscribe(
        self, query: str, variables: Mapping[str, Any], timeout: Optional[float]
    ) -> Iterator[dict[str, Any]]:
        """Each ``next`` event's ``data`` until the server completes the subscription.

        ``timeout`` (seconds) bounds the whole stream; ``None`` waits as long as it takes. Closing
        the generator closes the connection, which ends the subscription on the server.
        """
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> Optional[float]:
            if deadline is None:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeriverLiveTimeout(f"not done within {timeout} s")
            return remaining

        conn = self._connect(self._timeout if deadline is None else min(self._timeout, left() or 0))
        try:
            body = json.dumps({"query": query, "variables": _present(variables)})
            try:
                conn.request("POST", self._path, body=body, headers=self._headers("text/event-stream"))
                # The response may take the socket over (a stream without a length): keep it.
                sock = conn.sock
                response = conn.getresponse()
            except (socket.timeout, TimeoutError) as error:
                raise DeriverLiveTimeout(f"no answer within {timeout or self._timeout} s") from error
            except OSError as error:
                raise DeriverLiveError("NETWORK_ERROR", f"cannot reach {self._host}: {error}") from error
            # A refusal may come as a JSON answer or as a stream whose first event is the error.
            if "text/event-stream" not in (response.getheader("content-type") or ""):
                _data_of(_json(response.read(), response.status), response.status)
                raise DeriverLiveError("BAD_RESPONSE", f"expected an event stream, got HTTP {response.status}")
            event, data = "", []
            while True:
                remaining = left()
                if sock is not None:
                    # What is left of the deadline, at most the silence a live stream never has.
                    sock.settimeout(SILENCE_LIMIT if remaining is None else min(remaining, SILENCE_LIMIT))
                try:
                    line = response.fp.readline()
                except (socket.timeout, TimeoutError) as error:
                    if remaining is not None and remaining <= SILENCE_LIMIT:
                        raise DeriverLiveTimeout(f"not done within {timeout} s") from error
                    raise DeriverLiveError(
                        "NETWORK_ERROR", f"the server sent nothing for {SILENCE_LIMIT:g} s: the connection is dead"
                    ) from error
                if not line:
                    raise DeriverLiveError("NETWORK_ERROR", "the server closed the stream before completing it")
                text = line.decode("utf-8").rstrip("\r\n")
                if text:
                    name, _, value = text.partition(":")
                    if name == "event":
                        event = value.strip()
                    elif name == "data":
                        data.append(value[1:] if value.startswith(" ") else value)
                    continue
                if event == "complete":
                    return
                if event == "next" and data:
                    yield _data_of(json.loads("\n".join(data)), response.status)
                event, data = "", []
        finally:
            conn.close()


def _present(variables: Mapping[str, Any]) -> dict[str, Any]:
    """Variables without the ``None`` ones (an omitted argument, not an explicit null)."""
    return {k: v for k, v in variables.items() if v is not None}


def _json(raw: bytes, status: int) -> Any:
    try:
        return json.loads(raw)
    except ValueError as error:
        raise DeriverLiveError("BAD_RESPONSE", f"HTTP {status}: not a GraphQL answer: {raw[:200]!r}") from error


def _data_of(answer: Any, status: int) -> dict[str, Any]:
    errors = answer.get("errors") if isinstance(answer, dict) else None
    if errors:
        first = errors[0]
        extensions = first.get("extensions") or {}
        raise DeriverLiveError(
            extensions.get("code", "INTERNAL_SERVER_ERROR"),
            first.get("message", "unknown error"),
            argument=_argument(extensions),
            status=status,
            errors=errors,
        )
    data = answer.get("data") if isinstance(answer, dict) else None
    if data is None:
        raise DeriverLiveError("BAD_RESPONSE", f"HTTP {status}: the answer has no data", status=status)
    return data


def _argument(extensions: Mapping[str, Any]) -> Optional[str]:
    """The argument at fault, when the server names one (``messages.3.content``)."""
    path = extensions.get("argumentPath")
    if isinstance(path, list) and path:
        return ".".join(str(p) for p in path)
    return None
