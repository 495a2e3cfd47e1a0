"""gunicorn settings for the API (`gunicorn --config web/gunicorn_conf.py wsgi:app`)."""
import glob
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
