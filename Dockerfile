# The socialcare image: one image for the web process and every stage worker.
FROM python:3.11-slim
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# torch pinned first (point pip at a CPU-only wheel index for a much smaller image)
RUN pip install torch==2.13.0
COPY pyproject.toml README.md ./
COPY listener listener
COPY triage triage
COPY community community
COPY escalation escalation
COPY models models
COPY service service
COPY console console
RUN pip install .
EXPOSE 8080 9100
# 9100: a stage worker's /healthz, /readyz and /metrics when SOCIALCARE_WORKER_METRICS_PORT=9100
CMD ["socialcare", "web"]
