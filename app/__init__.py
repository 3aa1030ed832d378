"""Sluice: durable CloudEvents ingestion into PostgreSQL."""
