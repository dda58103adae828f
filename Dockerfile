# The reference sticky WebSocket server, as the Fargate service runs it.
# Build context: the repository root, narrowed by .dockerignore to what the image needs.
FROM python:3.11-slim AS build
# A C compiler for the compiled build of the hot path (mypyc; setup.py, STICKYWS_MYPYC=1).
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md LICENSE constraints.txt ./
COPY stickyws ./stickyws
# The server's dependencies and mypy before the build, so mypyc sees the types `make lint` sees; then the
# compiled stickyws wheel, and the wheels of its dependencies beside it.
RUN pip install --no-cache-dir -c constraints.txt mypy setuptools ".[server]" \
 && STICKYWS_MYPYC=1 pip wheel --no-cache-dir --no-build-isolation --no-deps --wheel-dir /wheels . \
 && pip wheel --no-cache-dir -c constraints.txt --wheel-dir /wheels "$(ls /wheels/stickyws-*.whl)[server]"

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home stickyws
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "stickyws[server]" && rm -rf /wheels \
 && python -c "import importlib, sys, stickyws.compiled as c; [importlib.import_module(m) for m in c.MODULES]; s = c.state(); print(s.describe()); sys.exit(not s.compiled)"
ENV PYTHONUNBUFFERED=1
USER 10001
EXPOSE 8080
# Follows the same settings as the server (STICKYWS_PORT, STICKYWS_HEALTH_CHECK_PATH; defaults 8080, /health).
# ECS uses the container health check in the task definition; this one serves `docker run`.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as u; port = os.environ.get('STICKYWS_PORT', '8080'); path = os.environ.get('STICKYWS_HEALTH_CHECK_PATH', '/health'); u.urlopen(f'http://127.0.0.1:{port}{path}', timeout=4)"]
ENTRYPOINT ["stickyws"]
CMD ["serve", "--host", "0.0.0.0"]
