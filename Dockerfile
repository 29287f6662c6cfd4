# floyo-pipeline: an always-on worker. Build: `docker build -t floyo-pipeline .`
# No secret is baked in: DATABASE_URL, SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY come from the
# environment at run time (`fly secrets set ...`, see docs/operations.md).

# --- build: install the package and its dependencies (the ranges in pyproject.toml) into a venv ---
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, from pyproject.toml only, so code changes reuse this layer.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print(chr(10).join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
    > /tmp/requirements.txt
RUN pip install --upgrade pip && pip install -r /tmp/requirements.txt
COPY floyo_pipeline ./floyo_pipeline
COPY consumers ./consumers
RUN pip install --no-deps . && floyo-pipeline --version

# --- runtime: the venv, the migrations, a non-root user ---
FROM python:3.11-slim AS runtime
RUN groupadd --system --gid 10001 floyo \
 && useradd --system --uid 10001 --gid floyo --home-dir /app --shell /usr/sbin/nologin floyo
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# `floyo-pipeline migrate` (Fly's release_command) reads supabase/migrations from the working folder.
COPY supabase ./supabase
RUN mkdir -p /app/.floyo && chown floyo:floyo /app/.floyo
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FLOYO_HTTP_PORT=9091 \
    FLOYO_LOG_FORMAT=json
USER floyo
EXPOSE 9091
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["floyo-pipeline", "healthcheck"]
# SIGTERM drains (finish the batch in flight, release leases) within FLOYO_SHUTDOWN_GRACE_SECONDS.
STOPSIGNAL SIGTERM
CMD ["floyo-pipeline", "run"]
