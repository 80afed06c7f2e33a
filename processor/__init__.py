"""Fold Flyte execution events from Kafka into execution-state topics."""

__version__ = "0.1.0"
