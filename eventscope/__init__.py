"""Eventscope: an observability dashboard for Kafka and Redis Streams."""
