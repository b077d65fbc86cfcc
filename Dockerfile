# mcpwall as a container: the HTTP gateway (Streamable HTTP on :8000).
#
# By default it runs in front of mcpwall's own demo server with the demo policy, so that
# `docker run --rm -p 8000:8000 --read-only --tmpfs /tmp mcpwall` answers at once; give
# other arguments to put it in front of your server:
#   docker run ... mcpwall -c /etc/mcpwall/policy/policy.yaml --transport http \
#       --bind 0.0.0.0 --port 8000 --allowed-host mcp.example.com --upstream https://...
# The root filesystem may be read-only: everything mcpwall writes (the SQLite state, the
# audit log) goes to /var/lib/mcpwall, which is HOME too, and Python writes no bytecode.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: a wheel of mcpwall, and wheels of everything it needs ---------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip wheel --wheel-dir /wheels '.[redis]'

# --- runtime: the wheels installed into a slim image, run as an unprivileged user -----
FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# BuildKit (the default builder since Docker 23) mounts the wheels without a layer.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links /wheels 'mcpwall[redis]' \
 && groupadd --system --gid 10001 mcpwall \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/mcpwall \
        --no-create-home --shell /usr/sbin/nologin mcpwall \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/mcpwall \
 && install -d -m 0755 /etc/mcpwall/policy
COPY src/mcpwall/demo/policy.yaml /etc/mcpwall/policy/policy.yaml

ENV HOME=/var/lib/mcpwall \
    TMPDIR=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/mcpwall"]
WORKDIR /var/lib/mcpwall
USER 10001:10001
EXPOSE 8000

ENTRYPOINT ["mcpwall"]
# The demo: the gateway on 0.0.0.0:8000 in front of the bundled demo server. Bound to
# every address, mcpwall would accept any Host header; naming the loopback names keeps
# the DNS-rebinding check for `docker run -p 8000:8000` (add the names you serve under).
CMD ["-c", "/etc/mcpwall/policy/policy.yaml", "--transport", "http", "--bind", "0.0.0.0", "--port", "8000", "--allowed-host", "localhost", "--allowed-host", "127.0.0.1", "--state-dir", "/var/lib/mcpwall", "--events-dir", "/var/lib/mcpwall/events", "--", "python", "-m", "mcpwall.demo.server"]
