"""Baseline (c): a bare Flask endpoint doing one INSERT, served by gunicorn with the API's settings.

`gunicorn --config web/gunicorn_conf.py bench.bare_app:app`. Same database, same engine options
(pool size, timeouts) as the API; no auth, no validation, no outbox: the floor under POST /bookings.

GET /page answers the bytes of the file BENCH_PAGE_PATH names, read once at start: a JSON body of
the seat page's size, from memory, the floor under GET /shows/{id}/seats (the seated rush).
"""
import os
from pathlib import Path

from flask import Flask, Response, jsonify, request
from sqlalchemy import create_engine, text

from web.config import Config

TABLE_DDL = ("CREATE TABLE IF NOT EXISTS bench_inserts (id bigserial PRIMARY KEY, show_id text, qty int, "
             "payment_method text, created_at timestamptz NOT NULL DEFAULT now())")

app = Flask(__name__)
engine = create_engine(Config.SQLALCHEMY_DATABASE_URI, **Config.SQLALCHEMY_ENGINE_OPTIONS)
PAGE = Path(os.environ["BENCH_PAGE_PATH"]).read_bytes() if os.environ.get("BENCH_PAGE_PATH") else b"{}"


@app.get("/healthz")
def healthz():
    return {"status": "ok"}


@app.post("/insert")
def insert():
    body = request.get_json()
    with engine.begin() as connection:
        row_id = connection.execute(
            text("INSERT INTO bench_inserts (show_id, qty, payment_method) VALUES (:show_id, :qty, :payment_method) "
                 "RETURNING id"),
            {"show_id": body["show_id"], "qty": body["qty"], "payment_method": body["payment_method"]},
        ).scalar_one()
    return jsonify(id=row_id), 202


@app.get("/page")
def page():
    return Response(PAGE, mimetype="application/json", headers={"ETag": '"bench"', "Cache-Control": "no-cache"})
