"""BROKER_URL picks the broker (celeryconfig.py): unset, Redis as always; an amqp:// URL,
RabbitMQ with quorum queues on topic exchanges, publisher confirms and a delivery limit. Each case
reads the settings in a fresh interpreter, as a process started with that environment would."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stack.rabbitmq import RabbitMQ, broker_env, is_rabbitmq

ROOT = Path(__file__).resolve().parents[2]

READ_SETTINGS = """
import json
import celeryconfig as c
from web import create_app
celery = create_app().extensions["celery"]
queues = {q.name: {"exchange": q.exchange.name, "type": q.exchange.type, "key": q.routing_key,
                   "arguments": q.queue_arguments} for q in c.task_queues}
route = celery.amqp.router.route({}, "payments.charge", (), {})
print(json.dumps({"broker": celery.conf.broker_url, "rabbitmq": c.BROKER_IS_RABBITMQ, "queues": queues,
                  "options": celery.conf.broker_transport_options, "redis": c.REDIS_URL,
                  "route": route["queue"].name, "acks_late": celery.conf.task_acks_late}))
"""


def settings(**env) -> dict:
    environment = {key: value for key, value in os.environ.items() if key != "BROKER_URL"}
    environment.update(env, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", READ_SETTINGS], cwd=ROOT, env=environment, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_without_broker_url_redis_is_the_broker_as_before():
    found = settings(REDIS_URL="redis://127.0.0.1:6390/4")
    assert found["broker"] == found["redis"] == "redis://127.0.0.1:6390/4" and not found["rabbitmq"]
    assert found["options"]["visibility_timeout"] == 3600
    assert all(queue["arguments"] in (None, {}) for queue in found["queues"].values())


def test_an_amqp_broker_url_declares_quorum_queues_on_topic_exchanges_with_confirms():
    found = settings(REDIS_URL="redis://127.0.0.1:6390/4", BROKER_URL="amqp://guest:guest@127.0.0.1:5672/box",
                     BROKER_DELIVERY_LIMIT="7")
    assert found["rabbitmq"] and found["broker"] == "amqp://guest:guest@127.0.0.1:5672/box"
    assert found["redis"] == "redis://127.0.0.1:6390/4"  # the shared state stays on Redis
    assert found["options"] == {"confirm_publish": True}  # and no visibility timeout
    assert found["acks_late"] is True
    assert set(found["queues"]) == {"seats", "payments", "tickets", "mypage", "maintenance", "waiting_room",
                                    "webhooks", "mail"}
    for name, queue in found["queues"].items():
        # Native delayed delivery routes a countdown by topic: a direct exchange would drop it.
        assert (queue["exchange"], queue["type"], queue["key"]) == (name, "topic", name)
        assert queue["arguments"] == {"x-queue-type": "quorum", "x-delivery-limit": 7}
    assert found["route"] == "payments"


def test_rabbitmq_urls_are_told_apart_and_given_vhosts():
    assert is_rabbitmq("amqp://u:p@h:5672/v") and is_rabbitmq("amqps://h/v") and is_rabbitmq("pyamqp://h//")
    assert not is_rabbitmq("redis://h:6379/0") and not is_rabbitmq(None) and not is_rabbitmq("")
    server = RabbitMQ("amqp://guest:secret@127.0.0.1:5672/")
    assert server.with_vhost("boxoffice test/1") == "amqp://guest:secret@127.0.0.1:5672/boxoffice%20test%2F1"
    assert broker_env("amqp://h/v") == {"BROKER_URL": "amqp://h/v"} and broker_env("redis://h/0") == {}
    with pytest.raises(ValueError):
        RabbitMQ("redis://127.0.0.1:6379/0")
    assert not RabbitMQ("amqp://guest:guest@broker.example.com:5672/").controllable()  # not this machine's
