# syntax=docker/dockerfile:1
# The latency-budget harness and its reference service, CPU only, as a non-root user.
#   docker build -t latency-budget-harness:0.1.0 .
#   docker run --rm -p 8000:8000 latency-budget-harness:0.1.0            # the HTTP service
#   docker run --rm latency-budget-harness:0.1.0 harness run --duration 30s   # the harness
FROM python:3.11.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# CPU-only torch first, from PyTorch's CPU index (the default index resolves CUDA wheels,
# gigabytes the service never uses); its own layer so code changes do not re-download it.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /app
COPY pyproject.toml README.md ./
COPY instrumentation ./instrumentation
COPY workloads ./workloads
COPY harness ./harness
# The harness reads alerts/ and dashboards/ beside its package (editable install keeps them there).
COPY alerts ./alerts
COPY dashboards ./dashboards
RUN pip install -e . \
 && useradd --system --uid 10001 --user-group --home-dir /app --no-create-home lbh \
 && mkdir -p /app/results \
 && chown lbh:lbh /app/results

USER 10001:10001
EXPOSE 8000 9100

HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request, sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status == 200 else 1)"]

CMD ["python", "-m", "workloads.cli", "serve", "--host", "0.0.0.0", "--port", "8000"]
