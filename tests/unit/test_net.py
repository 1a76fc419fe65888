"""Connection settings reach real sockets: keepalive read back from the kernel."""

import socket

import pytest

from stalwart import ConnectionSettings, django_redis_options
from stalwart.net import apply_keepalive, read_keepalive
from stalwart.testing.services import require


def test_apply_keepalive_sets_what_read_keepalive_reads_back():
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    try:
        assert read_keepalive(client).keepalive is False  # the kernel default: no probes at all
        apply_keepalive(client, ConnectionSettings(keepalive_idle=61, keepalive_interval=11,
                                                   keepalive_count=4))
        ka = read_keepalive(client)
        assert (ka.keepalive, ka.idle, ka.interval, ka.count) == (True, 61, 11, 4)
    finally:
        client.close()
        server.close()


def test_dead_peer_bound_is_idle_plus_probes():
    assert ConnectionSettings().dead_peer_bound == 60 + 10 * 9


def test_django_redis_options_give_pooled_connections_keepalive():
    """Build the pool the way django-redis's ConnectionFactory does, and read the socket."""
    redis = pytest.importorskip("redis")
    require("redis", "127.0.0.1", 6379)
    options = django_redis_options(ConnectionSettings(keepalive_idle=45))
    # django-redis: pool_cls.from_url(url, socket_timeout=SOCKET_TIMEOUT,
    #   socket_connect_timeout=SOCKET_CONNECT_TIMEOUT, **CONNECTION_POOL_KWARGS)
    pool = redis.ConnectionPool.from_url(
        "redis://127.0.0.1:6379/0", socket_timeout=options["SOCKET_TIMEOUT"],
        socket_connect_timeout=options["SOCKET_CONNECT_TIMEOUT"],
        **options["CONNECTION_POOL_KWARGS"])
    client = redis.Redis(connection_pool=pool)
    try:
        assert client.ping()
        conn = pool.get_connection()
        try:
            ka = read_keepalive(conn._sock)
        finally:
            pool.release(conn)
        assert (ka.keepalive, ka.idle, ka.interval, ka.count) == (True, 45, 10, 9)
    finally:
        pool.disconnect()


@pytest.mark.parametrize(("url", "port"), [
    ("redis://127.0.0.1:6379/0?prefix=t_netsettings", 6379),
    ("postgresql://127.0.0.1:5432/test?schema=t_netsettings", 5432),
])
def test_app_connection_settings_reach_the_backend_sockets(url, port):
    """App(connection=...) is what the kernel applies to the broker's sockets."""
    from stalwart import App

    require(url.split(":")[0], "127.0.0.1", port)
    app = App("x", broker=url, connection=ConnectionSettings(keepalive_idle=33,
                                                             keepalive_interval=7,
                                                             keepalive_count=4))
    backend = app.open_backend()
    try:
        backend.queue_stats()  # open at least one pooled connection
        seen = backend.connections()
        assert seen
        assert all((c.keepalive, c.idle, c.interval, c.count) == (True, 33, 7, 4) for c in seen)
    finally:
        backend.close()
        if url.startswith("postgresql"):
            import psycopg

            with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as c:
                c.execute('DROP SCHEMA IF EXISTS "t_netsettings" CASCADE')
