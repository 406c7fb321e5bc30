"""Kafka: topics, the producer, bounded readers, the dead-letter topic and the client SDK."""
