# The reference sticky WebSocket server, as the Fargate service runs it.
# Build context: the repository root, narrowed by .dockerignore to what the image needs.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY stickyws ./stickyws
RUN pip wheel --no-cache-dir -c constraints.txt --wheel-dir /wheels ".[server]"

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home stickyws
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "stickyws[server]" && rm -rf /wheels
ENV PYTHONUNBUFFERED=1
USER 10001
EXPOSE 8080
# Follows the same settings as the server (STICKYWS_PORT, STICKYWS_HEALTH_CHECK_PATH; defaults 8080, /health).
# ECS uses the container health check in the task definition; this one serves `docker run`.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as u; port = os.environ.get('STICKYWS_PORT', '8080'); path = os.environ.get('STICKYWS_HEALTH_CHECK_PATH', '/health'); u.urlopen(f'http://127.0.0.1:{port}{path}', timeout=4)"]
ENTRYPOINT ["stickyws"]
CMD ["serve", "--host", "0.0.0.0"]
