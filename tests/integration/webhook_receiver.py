"""A webhook receiver for the tests, run as its own process: it records every POST it gets (headers
and body, one JSON line each) and answers with --status, after --delay seconds (a receiver that
hangs past the sender's timeout)."""
import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument("--delay", type=float, default=0)
    args = parser.parse_args()
    lock = threading.Lock()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock, open(args.log, "a") as log:
                log.write(json.dumps({"headers": dict(self.headers), "body": body.decode(), "at": time.time()}) + "\n")
            time.sleep(args.delay)
            self.send_response(args.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):  # /healthz, for the test to know it is up
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_):
            pass

    ThreadingHTTPServer(("127.0.0.1", args.port), Receiver).serve_forever()


if __name__ == "__main__":
    main()
