"""A minimal "own server" for the twin's tests (standard library only): run as a ``--server-cmd``.

``python cookie_server.py --port P --server-id ID [--cookie NAME]`` listens on 127.0.0.1:P:

* ``GET /health``: 200 ``ok``;
* ``GET /login``: 200, body ``ID``, and ``Set-Cookie: NAME=<ID>-<n>; Path=/`` (the application's
  session cookie, ``SESSION`` by default): what starts ``app_cookie`` stickiness on the ALB;
* any other ``GET``: 200, body ``ID`` (which server answered).

SIGTERM stops it with exit code 0.
"""

from __future__ import annotations

import argparse
import itertools
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server-id", required=True)
    parser.add_argument("--cookie", default="SESSION")
    args = parser.parse_args()
    sessions = itertools.count(1)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"ok" if self.path == "/health" else args.server_id.encode()
            self.send_response(200)
            if self.path == "/login":
                self.send_header("Set-Cookie", f"{args.cookie}={args.server_id}-{next(sessions)}; Path=/")
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *items: object) -> None:
            """Quiet: the twin's tests read no access log."""

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"{args.server_id} listening on 127.0.0.1:{args.port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
