"""The Redis broker transport, with one fix: a worker must never wait for ever on the fanout
channel after Redis restarts.

kombu's Redis transport reads its Pub/Sub connection (the broadcast channel of remote control,
the events) only when the event loop saw its socket readable, calling `PubSub.parse_response()`,
which blocks. When Redis restarts, the old socket is readable (closed): redis-py 8 reconnects,
subscribes again, and retries the read on the new connection, blocking with no timeout, by design
(a blocking read waits for the next message), so the worker's one event loop waits for a message
on a channel that rarely gets one: it consumes nothing more, for ever (seen in the chaos run's
"Redis restarted empty" fault: a payments worker silent with its queue filling up).

Here the fanout connection's reads are never unbounded: a read kombu asks for as blocking waits
FANOUT_READ_TIMEOUT_S at most, and answers "nothing yet" (None, which kombu takes as no message)
when nothing came. Everything else is kombu's. celeryconfig.py makes it the transport of
`redis://` URLs.
"""
from __future__ import annotations

from functools import cached_property

from kombu.transport import redis as kombu_redis
from redis.client import PubSub

FANOUT_READ_TIMEOUT_S = 1.0


class FanoutPubSub(PubSub):
    """A Pub/Sub connection whose blocking reads are bounded."""

    def parse_response(self, block=True, timeout=0):
        if block:
            block, timeout = False, FANOUT_READ_TIMEOUT_S
        return super().parse_response(block=block, timeout=timeout)


class Channel(kombu_redis.Channel):
    @cached_property
    def subclient(self):
        """Pub/Sub connection used to consume fanout queues (kombu's, with bounded reads)."""
        client = self._create_client(asynchronous=True)
        return FanoutPubSub(client.connection_pool, event_dispatcher=client._event_dispatcher)


class Transport(kombu_redis.Transport):
    Channel = Channel
