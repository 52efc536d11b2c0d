"""The faust app: built by :func:`build_app`, never at import time.

* Consumers read with ``isolation.level=read_committed`` (the scorer writes scores in
  Kafka transactions; an aborted batch must not be counted), at-least-once processing
  whose redeliveries the state absorbs; see :mod:`services.monitor.transport`.
* Topics carry bytes (``raw``); records are decoded with our Avro :class:`Codec`. Tables
  use the ``json`` codec. No pickle anywhere.
* Tables are changelog-backed (``memory://`` store, recovered from the changelog on
  start). Windows are keyed by the monitor itself (no faust windowed tables). Each
  changelog has one partition and every write names it (:class:`MonitorTable`), so a
  key always lives in that partition whatever source partition wrote it.
* One worker: drift windows and the recall cohorts need every partition of ``scores``
  and ``labels``. A worker that is not given all of them says so (log + metric).
"""

from __future__ import annotations

import ssl
from typing import Any

import faust

from services.core import topics
from services.monitor.transport import MonitorTransport, check_faust_version
from services.settings import MonitorSettings

TABLE_CODEC = "json"
TOPIC_CODEC = "raw"
STATE_TABLE, TXNS_TABLE = "state", "txns"


CHANGELOG_PARTITION = 0  # the tables' changelogs have exactly one partition


class MonitorTable(faust.Table):
    """A table whose changelog writes name their partition.

    faust's partitioner path (``use_partitioner``) asks the producer's *cached* cluster
    metadata for the changelog's partitions synchronously, inside ``table[key] = v``.
    Right after start-up that cache may not know a just-created changelog yet (aiokafka
    drops topics whose leader is not elected), and ``partitions_for_topic`` returns
    None: ``TypeError: 'NoneType' object is not iterable`` from the first write of
    whichever agent runs first. With an explicit partition faust never asks, and the
    producer's ``send`` awaits the topic's metadata before it transmits.
    """

    def partition_for_key(self, key: Any) -> int | None:
        return CHANGELOG_PARTITION


class MonitorApp(faust.App):
    """A faust App on :class:`MonitorTransport` (read_committed, lean message pump)."""

    def _new_transport(self) -> Any:
        return MonitorTransport(self.conf.broker_consumer, self)


def broker_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{hostport.strip()}" for hostport in bootstrap.split(",") if hostport.strip()]


def credentials(cfg: MonitorSettings) -> faust.types.auth.CredentialsT | None:
    """faust credentials from the shared Kafka settings (TLS and SASL)."""
    protocol = cfg.kafka_security_protocol
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        cafile = str(cfg.kafka_ssl_ca_location) if cfg.kafka_ssl_ca_location else None
        context = ssl.create_default_context(cafile=cafile)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    if protocol.startswith("SASL"):
        password = cfg.kafka_sasl_password.get_secret_value() if cfg.kafka_sasl_password else None
        return faust.SASLCredentials(
            username=cfg.kafka_sasl_username,
            password=password,
            ssl_context=context,
            mechanism=cfg.kafka_sasl_mechanism or "PLAIN",
        )
    return None


def build_app(cfg: MonitorSettings, **overrides: Any) -> MonitorApp:
    """The app with its topics and tables declared (agents: :mod:`services.monitor.agents`)."""
    check_faust_version()
    conf: dict[str, Any] = dict(
        broker=broker_urls(cfg.kafka_bootstrap),
        broker_credentials=credentials(cfg),
        store="memory://",
        datadir=str(cfg.data_dir),
        autodiscover=False,
        web_enabled=False,
        value_serializer=TOPIC_CODEC,
        key_serializer=TOPIC_CODEC,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        topic_disable_leader=True,
        topic_replication_factor=1,
        broker_commit_every=10_000,
        broker_commit_interval=2.0,
        stream_buffer_maxsize=20_000,
        producer_acks=-1,
        Table=MonitorTable,
    )
    conf.update(overrides)
    app = MonitorApp(cfg.app_id, **conf)
    app.monitor_topics = {  # type: ignore[attr-defined]
        name: app.topic(cfg.topic(name), key_serializer=TOPIC_CODEC, value_serializer=TOPIC_CODEC)
        for name in (topics.SCORES, topics.LABELS, topics.RETRAIN, topics.MONITOR_DLQ)
    }
    for name, doc in (
        (STATE_TABLE, "drift windows, detector and retrain state"),
        (TXNS_TABLE, "scored transactions and labels for the recall join"),
    ):
        # faust picks a table's codecs from its key/value types: "json" for plain types.
        table: Any = app.Table(name, default=None, partitions=1, use_partitioner=True, help=doc)
        if (table.key_serializer, table.value_serializer) != (TABLE_CODEC, TABLE_CODEC):
            raise RuntimeError(f"table {name} would not use the {TABLE_CODEC} codec")
        if not isinstance(table, MonitorTable):
            raise RuntimeError(f"table {name} is a {type(table).__name__}, not a MonitorTable")
    return app
