# The worker and the MCP server image (docker-compose.yml runs both from it).
# Installs exactly what uv.lock pins, without the dev group.
FROM python:3.11-slim-bookworm

# The server runs as a user who cannot write /app, so Python cannot cache bytecode at run time:
# it is compiled here (UV_COMPILE_BYTECODE, compileall), else every start compiles every module
# from source (MCP server start-up: ~3.3 s instead of ~1.8 s, docs/benchmarks.md).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_LINK_MODE=copy \
    PATH=/app/.venv/bin:$PATH \
    TEAM_MEMORY_DATA_DIR=/data

RUN pip install --no-cache-dir uv==0.9.* \
    && useradd --system --create-home --home-dir /home/team-memory team-memory \
    && mkdir -p /data && chown team-memory /data

WORKDIR /app
# Dependencies first (cached layer), then the project itself.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY team_memory ./team_memory
COPY mcp_server ./mcp_server
COPY workflows ./workflows
COPY activities ./activities
COPY team_memory_core ./team_memory_core
COPY sql ./sql
RUN uv sync --frozen --no-dev \
    && python -m compileall -q team_memory mcp_server workflows activities team_memory_core

USER team-memory
VOLUME ["/data"]
EXPOSE 8765
CMD ["team-memory", "serve", "--transport", "http"]
