# syntax=docker/dockerfile:1
# Sluice's container image: one image, every command (`serve`, `consume`, `migrate`,
# `maintain`, `replay`) chosen by the arguments. Built and run for real by
# tests/image/ (podman, offline); see docs/deployment.md.
ARG PYTHON_IMAGE=docker.io/library/python
ARG PYTHON_VERSION=3.12

# --- build: the locked dependencies in a virtualenv, a layer of their own ---------------
FROM ${PYTHON_IMAGE}:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
# Only the lock file first: a change to the code does not reinstall the dependencies.
COPY requirements.lock /tmp/requirements.lock
RUN /opt/venv/bin/pip install --no-deps --require-hashes -r /tmp/requirements.lock

# --- final: the virtualenv, the app, its migrations and the default policy ---------------
# Contracts are deployment data (the chart mounts them from a ConfigMap): none ship here.
FROM ${PYTHON_IMAGE}:${PYTHON_VERSION}-slim
ARG UID=10001
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SLUICE_HOST=0.0.0.0 \
    SLUICE_PORT=8000
# /var/lib/sluice/metrics: where `serve --workers N` may keep its multiprocess metrics
# (PROMETHEUS_MULTIPROC_DIR; the chart mounts an emptyDir there); unset, gunicorn.conf.py
# makes a directory under /tmp. Single-process commands keep their metrics in memory.
RUN groupadd --gid ${UID} sluice \
    && useradd --no-log-init --uid ${UID} --gid ${UID} --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin sluice \
    && mkdir -p /var/lib/sluice/metrics \
    && chown ${UID}:${UID} /var/lib/sluice/metrics
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The project runs from its tree (migrations/ and gunicorn.conf.py sit beside app/, where
# app/storage/migrations.py looks for them); the default policy is app/privacy/'s.
COPY alembic.ini gunicorn.conf.py ./
COPY migrations ./migrations
COPY app ./app
# Compiled now: the root filesystem is read-only at run time.
RUN python -m compileall -q /app/app /app/migrations
USER ${UID}:${UID}
EXPOSE 8000 8001
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('SLUICE_PORT', '8000')}/health/live\", timeout=2)"]
ENTRYPOINT ["python", "-m", "app"]
CMD ["serve", "--workers", "1"]
