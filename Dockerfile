# syntax=docker/dockerfile:1
# One image for both services: `python -m gateway` (the default) and `python -m persister`.
#   docker build -t chat-backend:latest .
# No secrets are baked in: every setting comes from CHAT_* variables at run time.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml ./
COPY shared/ shared/
COPY gateway/ gateway/
COPY persister/ persister/
COPY embedded/ embedded/
RUN pip install --no-cache-dir .

FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CHAT_HOST=0.0.0.0
RUN groupadd --system --gid 10001 chat \
    && useradd --system --uid 10001 --gid chat --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin chat
# The venv is self-contained; only the interpreter path (/usr/local/bin) must match, and does,
# since both stages use the same base image.
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Numeric, so Kubernetes can verify runAsNonRoot without resolving names.
USER 10001:10001
# 8000: gateway (CHAT_PORT), 8001: persister (CHAT_PERSISTER_PORT).
EXPOSE 8000 8001
# No HEALTHCHECK here: the image runs two services on different ports. docker-compose.yml and the
# Kubernetes probes check /readyz and /healthz per service.
CMD ["python", "-m", "gateway"]
