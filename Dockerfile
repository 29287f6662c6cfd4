# floyo-pipeline: an always-on worker. Build: `docker build -t floyo-pipeline .`
# Run: `docker run --init --stop-timeout 30 -e DATABASE_URL=... floyo-pipeline` (docs/operations.md,
# section 9). No secret is baked in: DATABASE_URL, SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY come from
# the environment at run time (`fly secrets set ...`).

# --- build: the pinned runtime dependencies, then the package, into a venv of its own ---
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
# No pip inside the venv (the service never runs it): the base image's pip installs into it.
RUN python -m venv --without-pip /opt/venv
WORKDIR /src
# The dependency layer depends on the lock alone: a code or README change reuses it.
COPY requirements/runtime.lock ./requirements/
RUN pip --python /opt/venv/bin/python install --no-deps -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY floyo_pipeline ./floyo_pipeline
COPY consumers ./consumers
COPY supabase ./supabase
# The migrations go into the package (floyo_pipeline/migration_files): `migrate` needs no source tree.
RUN pip --python /opt/venv/bin/python install --no-deps . \
 && pip --python /opt/venv/bin/python check \
 && /opt/venv/bin/floyo-pipeline --version

# --- runtime: the venv and a non-root user, nothing else ---
FROM python:3.11-slim AS runtime
# A uid above the system range (10001), so that it matches no user of the host's.
RUN groupadd --gid 10001 floyo \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin floyo
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FLOYO_HTTP_PORT=9091 \
    FLOYO_LOG_FORMAT=json
# Numeric, so that a runtime (Kubernetes' runAsNonRoot) can check it is not root without /etc/passwd.
USER 10001:10001
EXPOSE 9091
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["floyo-pipeline", "healthcheck"]
# SIGTERM drains (finish the batch in flight, release leases) within FLOYO_SHUTDOWN_GRACE_SECONDS; the
# handlers are installed first thing, so it works as PID 1 too (`--init` still reaps zombies).
STOPSIGNAL SIGTERM
CMD ["floyo-pipeline", "run"]
