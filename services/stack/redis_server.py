"""The Redis side of the stack: config, command line, readiness probe."""

from __future__ import annotations

import redis

from services.stack import config
from services.stack.state import Layout


def write_config(layout: Layout, port: int) -> None:
    layout.redis_data.mkdir(parents=True, exist_ok=True)
    layout.redis_conf.write_text(config.render_redis_conf(port, layout.redis_data, layout.redis_conf))


def server_argv(redis_server: str, layout: Layout) -> list[str]:
    return [redis_server, str(layout.redis_conf)]


def url(port: int) -> str:
    return f"redis://{config.HOST}:{port}/0"


class PingProbe:
    """Answers "does redis-server answer PING?" (not while it still loads the AOF)."""

    def __init__(self, port: int) -> None:
        self._port = port
        self.last_error = ""

    def __call__(self) -> bool:
        client = redis.Redis(
            host=config.HOST, port=self._port, socket_connect_timeout=0.5, socket_timeout=2.0
        )
        try:
            return bool(client.ping())
        except redis.RedisError as exc:
            self.last_error = str(exc)
            return False
        finally:
            client.close()
