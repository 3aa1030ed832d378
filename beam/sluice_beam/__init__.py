"""Sluice on Apache Beam: backfill archived events and reprocess the quarantine through
the service's own steps and write (beam/README.md). Nothing in `app/` imports this."""
