#!/usr/bin/env python3
"""A deriver in Python for Deriver Live, standard library only.

Deriver Live POSTs every task here as JSON when it runs with HANDLER_URL=http://host:port/ (see
README "Bring your own deriver"). This worker:

- refuses a request whose X-Deriver-Signature is not the HMAC-SHA256 of the body with
  HANDLER_SECRET (401: the task fails for good, with this worker's answer as its error);
- "derives" something small from the messages (here: word counts) and appends one JSON line per
  task to OUTPUT (default: standard output);
- answers 200 when done, 4xx when the task can never succeed, 5xx when it may succeed later, and
  429 with Retry-After when its (pretend) model provider is rate limited;
- takes batches too: a batched task type (REPRESENTATION_BATCH=...) sends {"tasks": [...]}, a
  unit's consecutive tasks in order; the worker does them in order and answers {"completed": n}
  when it stops early, so the rest come back in the next batch (with the one that stopped it first);
- is idempotent: a task id it already finished is answered 200 again without doing the work twice
  (a task may be delivered twice after a crash or a lost answer).

For trying failure handling, a message whose content holds one of these words makes the worker:
  #reject  answer 422 (the task fails for good)
  #flaky   answer 503 on the first attempt (the task is retried)
  #slow    sleep SLOW_SECONDS (default 5) on the first attempt (Deriver Live times it out)
  #limited answer 429 with Retry-After: 1 the first time (the task type pauses, no failure counted)

It also receives Deriver Live's webhooks at /webhook (createWebhook with url http://host:port/webhook):
it checks X-Honcho-Signature (the hex HMAC-SHA256 of the body with WEBHOOK_SECRET) and answers 401
when it does not match, records each event once by its X-Deriver-Event-Id (a retry carries the same
id), and answers 200.

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
WEBHOOK_SECRET = os.environ.get("WEBHOOK_SECRET", "")
SLOW_SECONDS = float(os.environ.get("SLOW_SECONDS", "5"))
OUTPUT = os.environ.get("OUTPUT")

_done = set()
_limited = set()
_events = set()
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

    def answer_json(self, status, value):
        body = json.dumps(value).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if self.path.startswith("/webhook"):
            return self.webhook(body)
        if SECRET:
            expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            given = self.headers.get("X-Deriver-Signature", "")
            if not hmac.compare_digest(expected, given):
                return self.answer(401, "invalid signature: check HANDLER_SECRET on both sides")
        try:
            payload = json.loads(body)
        except ValueError:
            return self.answer(400, "the body is not JSON")

        batch = payload.get("tasks")
        tasks = batch if batch is not None else [payload]
        done = 0
        for task in tasks:
            refusal = self.refusal(task)
            if refusal:
                break
            self.derive_once(task, len(tasks) if batch is not None else None)
            done += 1
        if done == len(tasks):
            return self.answer_json(200, {"completed": done}) if batch is not None else self.answer(200, "ok")
        if done > 0:
            # A batch stopped early: the first `done` are finished, the rest come back later.
            return self.answer_json(200, {"completed": done})
        status, text, headers = refusal
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        encoded = text.encode("utf-8")
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(encoded)))
        self.end_headers()
        self.wfile.write(encoded)

    def webhook(self, body):
        """A webhook event: signed with WEBHOOK_SECRET, recorded once by its event id."""
        expected = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        if not WEBHOOK_SECRET or not hmac.compare_digest(expected, self.headers.get("X-Honcho-Signature", "")):
            return self.answer(401, "invalid webhook signature: check WEBHOOK_SECRET")
        event_id = self.headers.get("X-Deriver-Event-Id", "")
        with _lock:
            seen = event_id in _events
            _events.add(event_id)
        if not seen:
            event = json.loads(body)
            record({"webhook": event["type"], "eventId": event_id, "data": event["data"]})
        self.answer(200, "ok")

    def refusal(self, task):
        """Why this task cannot be done now: (status, text, headers), or None to do it."""
        contents = " ".join(m["content"] for m in task["messages"])
        first = task["attempt"] == 1
        with _lock:
            if task["taskId"] in _done:
                return None
        if "#reject" in contents:
            return (422, "cannot derive anything from a message marked #reject", {})
        if "#flaky" in contents and first:
            return (503, "model overloaded, try again", {})
        if "#limited" in contents and task["taskId"] not in _limited:
            # Once per task: a 429 is not an attempt, so the attempt number does not grow.
            with _lock:
                _limited.add(task["taskId"])
            return (429, "the model provider is rate limited", {"Retry-After": "1"})
        if "#slow" in contents and first:
            time.sleep(SLOW_SECONDS)
        return None

    def derive_once(self, task, batch_size):
        """Does the task unless it was done before (a task may be delivered twice)."""
        with _lock:
            if task["taskId"] in _done:
                return
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
                "batch": batch_size,
            }
        )
        with _lock:
            _done.add(task["taskId"])

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
