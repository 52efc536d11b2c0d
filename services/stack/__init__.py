"""The local stack: Apache Kafka (KRaft, fetched with Maven) and redis-server, no Docker.

    from services.stack import Stack
    info = Stack(settings).up()      # StackInfo(kafka_bootstrap=..., redis_url=..., ...)
    Stack(settings).status()         # StackStatus
    Stack(settings).down()

``fraudstream stack up|down|status|fetch`` is the CLI over the same object.
"""

from services.stack.stack import ComponentStatus, Stack, StackError, StackInfo, StackStatus

__all__ = ["ComponentStatus", "Stack", "StackError", "StackInfo", "StackStatus"]
