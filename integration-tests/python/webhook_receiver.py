"""A webhook receiver for the tests: verifies every request with the Standard Webhooks
reference library (`standardwebhooks` from PyPI) and answers by path:

  /flaky  503 to the first two attempts of each webhook-id, then 204
  /ok     204
  /gone   410 (a receiver that wants no more: must not be retried)

It prints `listening PORT`, then one JSON line per attempt: path, webhook-id, whether the
signature verified, the event type and task, and the status it answered.
"""

import json
import os
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

verifier = Webhook(os.environ["WEBHOOK_SECRET"])
attempts = Counter()
# Requests are served on threads: one line per attempt, written whole under a lock.
output = threading.Lock()


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            payload = verifier.verify(body, headers)
            verified = True
        except WebhookVerificationError as error:
            payload, verified = json.loads(body or b"{}"), False
            print(f"# verification failed: {error}", file=sys.stderr, flush=True)
        message_id = headers.get("webhook-id", "")
        with output:
            attempts[message_id] += 1
            attempt = attempts[message_id]
        if self.path == "/gone":
            status = 410
        elif self.path == "/flaky" and attempt <= 2:
            status = 503
        else:
            status = 204
        line = json.dumps({
            "path": self.path,
            "id": message_id,
            "verified": verified,
            "type": payload.get("type"),
            "task_id": (payload.get("data") or {}).get("task_id"),
            "status": status,
        })
        with output:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
print(f"listening {server.server_address[1]}", flush=True)
server.serve_forever()
