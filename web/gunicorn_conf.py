"""gunicorn settings for the API (`gunicorn --config web/gunicorn_conf.py wsgi:app`)."""
import glob
import json
import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads let one worker overlap database round trips; keep them at or below the DB pool size
# (DB_POOL_SIZE + DB_MAX_OVERFLOW) so a request never waits for a connection.
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "8"))
# Deploys: finish in-flight requests before a worker exits.
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "30"))
timeout = 60
keepalive = 5
accesslog = os.environ.get("ACCESS_LOG") or None
# gunicorn's control socket would be shared by every gunicorn of this user; we don't use it.
control_socket_disable = True

# Requests gunicorn refuses before the app sees them (its defaults, stated here on purpose): the
# longest URL of the API is well under 200 bytes and a bearer token under 1 KiB, so these leave
# room for proxies' headers and cookies while a client cannot make a worker buffer more.
# Over them gunicorn answers 414 (request line) or 431 (header fields), in the API's JSON error
# shape (see post_worker_init); bodies are limited by the app (MAX_CONTENT_LENGTH, 413).
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190


# prometheus-client multiprocess mode (web/metrics.py): each worker writes its counters to
# PROMETHEUS_MULTIPROC_DIR. The folder starts empty on every start of the server, or counters of
# the previous run would be added to this one's; a worker that exits is marked dead so its gauges
# stop counting (its counters stay, as the library documents).
def on_starting(server):
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)
        for stale in glob.glob(os.path.join(folder, "*.db")):
            os.remove(stale)


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(worker.pid)


# gunicorn writes its own answers (the limits above, a request that is not HTTP) as an HTML page
# and has no setting for it (benoitc/gunicorn#993); its one writer of them,
# gunicorn.util.write_error(sock, status, reason, message), is replaced in each worker by one
# that writes the API's error body {code, status, message}.
def post_worker_init(worker):
    from gunicorn import util
    from web.errors import error_body

    cfg = worker.cfg
    explained = {
        414: f"the request line (method, URL and HTTP version) is longer than {cfg.limit_request_line} bytes",
        431: f"the request has more than {cfg.limit_request_fields} header fields, "
             f"or one longer than {cfg.limit_request_field_size} bytes",
    }

    def write_json_error(sock, status_int, reason, mesg):
        if status_int in explained:
            message = explained[status_int]
        elif status_int == 400:
            message = f"the request is not valid HTTP: {mesg[:300]}" if mesg else "the request is not valid HTTP"
        else:
            message = mesg[:300] or None
        body = json.dumps(error_body(status_int, message)).encode()
        head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        util.write_nonblock(sock, head.encode("latin-1") + body)

    if not callable(getattr(util, "write_error", None)):
        raise RuntimeError("gunicorn.util.write_error is gone: its error pages would be HTML again")
    util.write_error = write_json_error
