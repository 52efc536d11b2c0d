"""fraudstream: event-driven card-fraud scoring and monitoring.

Sub-packages:
    core      pure logic (features, codec, PSI, recall, decisions); no Kafka or Redis imports
    stack     the local Kafka + Redis stack (no Docker)
    kafka     thin confluent-kafka adapters (admin, topics, producer/consumer config)
    online    the Redis online feature store
    ...       one package per service, each with a ``main(argv)``
"""

__version__ = "0.1.0"
