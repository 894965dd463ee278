"""Kafka helpers shared by the kafka_* probes: client set-up, lag maths, status rules."""
