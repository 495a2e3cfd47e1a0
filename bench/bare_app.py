"""Baseline (c): a bare Flask endpoint doing one INSERT, served by gunicorn with the API's settings.

`gunicorn --config web/gunicorn_conf.py bench.bare_app:app`. Same database, same engine options
(pool size, timeouts) as the API; no auth, no validation, no outbox: the floor under POST /bookings.
"""
from flask import Flask, jsonify, request
from sqlalchemy import create_engine, text

from web.config import Config

TABLE_DDL = ("CREATE TABLE IF NOT EXISTS bench_inserts (id bigserial PRIMARY KEY, show_id text, qty int, "
             "payment_method text, created_at timestamptz NOT NULL DEFAULT now())")

app = Flask(__name__)
engine = create_engine(Config.SQLALCHEMY_DATABASE_URI, **Config.SQLALCHEMY_ENGINE_OPTIONS)


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
