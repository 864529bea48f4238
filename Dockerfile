# syntax=docker/dockerfile:1
# The latency-budget harness and its reference service, CPU only, as a non-root user,
# installed from the wheel exactly as users install it (no editable checkout).
#   docker build -t latency-budget-harness:0.1.0 .
#   docker run --rm -p 127.0.0.1:8000:8000 latency-budget-harness:0.1.0          # the HTTP service
#   docker run --rm latency-budget-harness:0.1.0 harness run --duration 30s     # the harness

# -- stage 1: build the wheel (rules and dashboards become package data) ------------------
FROM python:3.11.10-slim-bookworm AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY instrumentation ./instrumentation
COPY workloads ./workloads
# harness/observe/assets links to the top-level alerts/ and dashboards/: the one source
COPY harness ./harness
COPY alerts ./alerts
COPY dashboards ./dashboards
RUN pip wheel --no-deps --wheel-dir /dist .

# -- stage 2: the image ------------------------------------------------------------------
FROM python:3.11.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# CPU-only torch first, from PyTorch's CPU index (the default index resolves CUDA wheels,
# gigabytes the service never uses); its own layer, before any project file, so code
# changes do not re-download it.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY --from=wheel /dist /dist
# [all]: service, k8s, grafana, otlp-grpc. URLLIB3_NO_OVERRIDE keeps grafana-client's
# urllib3-future from replacing urllib3 (the kubernetes client needs the real one).
RUN URLLIB3_NO_OVERRIDE=1 pip install --no-binary urllib3-future "$(ls /dist/*.whl)[all]" \
 && rm -rf /dist \
 && useradd --system --uid 10001 --user-group --home-dir /app --no-create-home lbh \
 && mkdir -p /app/results \
 && chown lbh:lbh /app/results

WORKDIR /app
USER 10001:10001
EXPOSE 8000 9100

HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request, sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status == 200 else 1)"]

CMD ["python", "-m", "workloads.cli", "serve", "--host", "0.0.0.0", "--port", "8000"]
