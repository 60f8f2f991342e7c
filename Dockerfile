# kbflow: the worker, the codec server, the agencies' API and the CLI in one image.
#
#   docker build -t kbflow .          (BuildKit: the default builder since Docker 23)
#   docker run --rm kbflow --help
#
# Entrypoint `kbflow`, default command `worker`; configuration comes from the environment
# (README, "Production (docker-compose)"). The build context is an allowlist
# (.dockerignore): no tests, no .kbflow/, no keys, no histories.

# Python 3.11 (requires-python >= 3.11), Debian 13 "trixie" slim. Pinned by minor
# version and Debian release; patch releases come with a rebuild (`--pull`).
FROM python:3.11-slim-trixie

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    KBFLOW_DATA_DIR=/data

# A system user with no login and no home; /data is the only place it writes (the outbox,
# processing log and key store), mode 0700. A named volume mounted there starts with
# this ownership.
RUN groupadd --system --gid 10001 kbflow \
    && useradd --system --uid 10001 --gid kbflow --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin kbflow \
    && install -d -o kbflow -g kbflow -m 0700 /data

# The project's runtime dependencies only (no extras). The sources are bind-mounted for
# this one step (a writable scratch copy, discarded afterwards): the image holds the
# installed package, not the source tree, and no build leftovers.
RUN --mount=type=bind,source=.,target=/src,rw \
    cd /src && pip install --no-cache-dir .

USER 10001:10001
WORKDIR /data

ENTRYPOINT ["kbflow"]
CMD ["worker"]
