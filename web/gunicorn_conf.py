"""gunicorn settings for the API (`gunicorn --config web/gunicorn_conf.py wsgi:app`)."""
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
