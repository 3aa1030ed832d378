"""The naive peer: the textbook FastAPI + SQLAlchemy ORM service, one commit per event.

Pydantic parses the body, each event becomes an ORM object that is added and committed on
its own, and a primary-key violation (a duplicate) is rolled back and reported as such.
This is the tutorial shape, not a strawman: correct, per-event answers after commit,
duplicates detected by the database. Same table as the competent peer (primary key
(source, id), a (type, time) index). `PEER_DATABASE_URL`; `create_schema(url)` first.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Body, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import DateTime, Index, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bench.peers.common import answer


class Base(DeclarativeBase):
    pass


class PeerEvent(Base):
    __tablename__ = "peer_events"
    __table_args__ = (Index("peer_events_type_time", "type", "time"),)

    source: Mapped[str] = mapped_column(Text, primary_key=True)
    id: Mapped[str] = mapped_column(Text, primary_key=True)
    type: Mapped[str] = mapped_column(Text)
    specversion: Mapped[str] = mapped_column(Text)
    time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    subject: Mapped[str | None] = mapped_column(Text)
    datacontenttype: Mapped[str | None] = mapped_column(Text)
    data: Mapped[Any] = mapped_column(JSONB, nullable=True)
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class CloudEventIn(BaseModel):
    specversion: Literal["1.0"]
    id: str
    source: str
    type: str
    time: datetime | None = None
    subject: str | None = None
    datacontenttype: str | None = None
    data: Any = None


def _engine(url: str) -> AsyncEngine:
    return create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))


async def create_schema(url: str) -> None:
    engine = _engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
    finally:
        await engine.dispose()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    engine = _engine(os.environ["PEER_DATABASE_URL"])
    app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


@app.post("/ingest")
async def ingest(
    request: Request, body: Annotated[list[CloudEventIn] | CloudEventIn, Body()]
) -> Response:
    events = body if isinstance(body, list) else [body]
    stored = []
    async with request.app.state.sessions() as session:
        for event in events:
            session.add(PeerEvent(**event.model_dump()))
            try:
                await session.commit()
                stored.append(True)
            except IntegrityError:
                await session.rollback()
                stored.append(False)
    return answer([(event.source, event.id) for event in events], stored)


@app.get("/health/ready")
async def ready() -> dict[str, str]:
    return {"status": "ok"}
