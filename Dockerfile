# vfo-otel receiver / CLI image. Build: docker build -t vfo-otel .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# .dockerignore lets only the package sources in (pyproject.toml, README.md, vfo_otel/, proto/).
COPY . /src
RUN pip install "/src[postgresql]" \
    && rm -rf /src \
    && useradd --system --uid 10001 --home-dir /data --create-home vfo

USER vfo
WORKDIR /data
VOLUME ["/data"]

# 4317: OTLP gRPC (TraceService, LogsService) + SnapshotService + grpc.health.v1
# 8686: HTTP JSON API, live stream and dashboard; GET /healthz
EXPOSE 4317 8686

ENTRYPOINT ["vfo-otel"]
CMD ["serve", "--grpc-address", "0.0.0.0:4317", "--http-address", "0.0.0.0:8686", "--store", "/data/vfo-otel.sqlite3"]
