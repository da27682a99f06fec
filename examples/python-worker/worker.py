#!/usr/bin/env python3
"""A deriver in Python for Deriver Live, standard library only.

Deriver Live POSTs every task here as JSON when it runs with HANDLER_URL=http://host:port/ (see
README "Bring your own deriver"). This worker:

- refuses a request whose X-Deriver-Signature is not the HMAC-SHA256 of the body with
  HANDLER_SECRET (401: the task fails for good, with this worker's answer as its error);
- "derives" something small from the messages (here: word counts) and appends one JSON line per
  task to OUTPUT (default: standard output);
- answers 200 when done, 4xx when the task can never succeed, 5xx when it may succeed later;
- is idempotent: a task id it already finished is answered 200 again without doing the work twice
  (a task may be delivered twice after a crash or a lost answer).

For trying failure handling, a message whose content holds one of these words makes the worker:
  #reject  answer 422 (the task fails for good)
  #flaky   answer 503 on the first attempt (the task is retried)
  #slow    sleep SLOW_SECONDS (default 5) on the first attempt (Deriver Live times it out)

Run:  HANDLER_SECRET=s3cret python3 examples/python-worker/worker.py --port 8080
It prints "listening on http://127.0.0.1:PORT/" once ready (--port 0 picks a free port).
"""

import argparse
import hashlib
import hmac
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = os.environ.get("HANDLER_SECRET", "")
SLOW_SECONDS = float(os.environ.get("SLOW_SECONDS", "5"))
OUTPUT = os.environ.get("OUTPUT")

_done = set()
_lock = threading.Lock()


def record(line):
    """Appends one JSON line to OUTPUT (or standard output)."""
    text = json.dumps(line, sort_keys=True) + "\n"
    with _lock:
        if OUTPUT:
            with open(OUTPUT, "a", encoding="utf-8") as out:
                out.write(text)
        else:
            sys.stdout.write(text)
            sys.stdout.flush()


def derive(task):
    """The 'derivation': words per message. A real deriver calls its model here."""
    return {m["id"]: len(m["content"].split()) for m in task["messages"]}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: Deriver Live reuses connections

    def answer(self, status, text):
        body = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if SECRET:
            expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            given = self.headers.get("X-Deriver-Signature", "")
            if not hmac.compare_digest(expected, given):
                return self.answer(401, "invalid signature: check HANDLER_SECRET on both sides")
        try:
            task = json.loads(body)
        except ValueError:
            return self.answer(400, "the body is not JSON")

        contents = " ".join(m["content"] for m in task["messages"])
        first = task["attempt"] == 1
        with _lock:
            seen = task["taskId"] in _done
        if seen:
            return self.answer(200, "already done")
        if "#reject" in contents:
            return self.answer(422, "cannot derive anything from a message marked #reject")
        if "#flaky" in contents and first:
            return self.answer(503, "model overloaded, try again")
        if "#slow" in contents and first:
            time.sleep(SLOW_SECONDS)

        record(
            {
                "taskId": task["taskId"],
                "type": task["type"],
                "attempt": task["attempt"],
                "sessionId": task["sessionId"],
                "observerId": task["observerId"],
                "senderId": task["senderId"],
                "seqs": [m["seq"] for m in task["messages"]],
                "summary": task["summary"],
                "words": derive(task),
                "connection": self.client_address[1],
            }
        )
        with _lock:
            _done.add(task["taskId"])
        self.answer(200, "ok")

    def log_message(self, format, *args):  # quiet: one JSON line per task is the output
        pass


def main():
    parser = argparse.ArgumentParser(description="A Deriver Live handler in Python.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    print(f"listening on http://{host}:{port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
