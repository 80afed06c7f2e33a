# Image of the flyte-state processor: the `flyte-state` command with its
# worker, publish, state and demo subcommands.
#
#   docker build -t flyte-state-processor:local .
#   docker run --rm -e KAFKA_BOOTSTRAP_SERVERS=host:9092 flyte-state-processor:local worker
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# pyproject.toml names README.md, which may not exist yet. COPY accepts a
# wildcard that matches nothing as long as another source (pyproject.toml)
# matches.
COPY pyproject.toml README.md* ./
COPY processor ./processor
COPY topologies ./topologies
COPY protos ./protos

# An editable install keeps the package in /app, next to protos/, because
# processor.protobuf_build compiles ../protos relative to the package.
# The generated modules are built here, newer than their .proto files, so the
# non-root user finds them current at runtime and needs no write access to /app.
RUN pip install -e . \
    && python -m processor.protobuf_build

RUN useradd --system --uid 10001 --home-dir /var/lib/flyte-state --create-home flyte
USER flyte
# Worker tables (FLYTE_STATE_STORE=rocksdb) live here. Mount a volume to keep them.
ENV FLYTE_STATE_DIR=/var/lib/flyte-state/state-data
WORKDIR /var/lib/flyte-state

ENTRYPOINT ["flyte-state"]
CMD ["worker"]
