# syntax=docker/dockerfile:1
# vitalstream: one image for both roles.
#   docker run IMAGE gateway            -> ingestion gateway on VITALSTREAM_GATEWAY_URL's port (8080)
#   docker run IMAGE worker vitals      -> a pipeline worker, /metrics and /healthz on VITALSTREAM_METRICS_PORT (9100)
# No credentials or account values are baked in: they come from the environment and the task / pod role.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# The build stage is the full image of the same Python and Debian release: it has gcc and the OpenSSL headers
# that the gateway's C fast path (service/_fastpath.c) compiles with; the slim runtime has libcrypto already
# (Python's ssl and hashlib use it).
ARG BUILD_IMAGE=python:3.11-bookworm

# ---------------------------------------------------------------- build: a venv with the pinned runtime deps
FROM ${BUILD_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# Dependencies first (cached while only the source changes): the project's runtime requirements from
# pyproject.toml, constrained to the versions of requirements.lock (which also pins the dev tools: those are
# not installed).
COPY pyproject.toml requirements.lock ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > requirements-runtime.txt \
 && pip install -r requirements-runtime.txt -c requirements.lock

COPY README.md ./
COPY schemas ./schemas
COPY common ./common
COPY service ./service
COPY workers ./workers
COPY vitalstream ./vitalstream
RUN pip install --no-deps . \
 && pip check

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="vitalstream" \
      org.opencontainers.image.description="Medical device vitals: HTTPS gateway -> Kinesis -> workers -> S3 + Redshift" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    VITALSTREAM_GATEWAY_URL=http://0.0.0.0:8080 \
    VITALSTREAM_METRICS_PORT=9100
RUN groupadd --system --gid 10001 vitalstream \
 && useradd --system --uid 10001 --gid vitalstream --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin vitalstream
COPY --from=build /opt/venv /opt/venv
COPY --chmod=0755 deploy/docker/healthcheck.py /usr/local/bin/vitalstream-healthcheck
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080 9100
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/bin/vitalstream-healthcheck"]
ENTRYPOINT ["vitalstream"]
CMD ["gateway"]
