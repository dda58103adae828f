# The reference sticky WebSocket server, as the Fargate service runs it.
# Build context: the repository root, narrowed by .dockerignore to what the image needs.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY stickyws ./stickyws
RUN pip wheel --no-cache-dir -c constraints.txt --wheel-dir /wheels ".[server]"

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home stickyws
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "stickyws[server]" && rm -rf /wheels
ENV PYTHONUNBUFFERED=1
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["stickyws"]
CMD ["serve", "--host", "0.0.0.0"]
