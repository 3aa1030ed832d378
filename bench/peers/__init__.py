"""What a team would write instead of Sluice, served and loaded exactly as Sluice is.

- `competent`: FastAPI + orjson + an asyncpg pool; one `INSERT … SELECT FROM unnest(…)
  ON CONFLICT DO NOTHING RETURNING` per request; a per-event answer after commit.
- `naive`: FastAPI + pydantic + the SQLAlchemy ORM, one commit per event.
- `bare`: FastAPI parsing the body with orjson and writing nothing (the HTTP floor).

Each reads `PEER_DATABASE_URL` (not `bare`), owns one table in a database of its own, and
answers `/ingest` with Sluice's shape (`stored`, `duplicate`, per-event `results`), so the
same load generator drives all of them. No anonymization, no contracts, no metrics.
"""
