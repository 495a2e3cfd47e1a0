"""RabbitMQ: the whole topology declared each time a worker's consumer starts or reconnects.

Celery declares only the queues a worker consumes, but its native delayed delivery (a retry's
countdown) binds every queue of the app to its delay exchanges, and a
queue not declared yet fails that binding: a delayed message for it would go nowhere. So every
worker declares every context's exchange and quorum queue (idempotent: the same arguments each
time), the delay exchanges, and their bindings. After a broker that lost its data comes back, the
first worker to reconnect declares it all again.
"""
from celery import bootsteps
from kombu.transport.native_delayed_delivery import (bind_queue_to_native_delayed_delivery_exchange,
                                                     declare_native_delayed_delivery_exchanges_and_queues)

import celeryconfig


class DeclareTopology(bootsteps.StartStopStep):
    requires = ("celery.worker.consumer.connection:Connection",)

    def include_if(self, c) -> bool:
        return celeryconfig.BROKER_IS_RABBITMQ

    def start(self, c) -> None:
        queues = [queue for queue in c.app.amqp.queues.values() if queue.queue_arguments]
        channel = c.connection.channel()
        try:
            for queue in queues:
                queue(channel).declare()
        finally:
            channel.close()
        declare_native_delayed_delivery_exchanges_and_queues(
            c.connection, c.app.conf.broker_native_delayed_delivery_queue_type)
        for queue in queues:
            bind_queue_to_native_delayed_delivery_exchange(c.connection, queue)
