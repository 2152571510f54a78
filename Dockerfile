# The image the Prefect worker runs: the project and its dependencies.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NO_ALBUMENTATIONS_UPDATE=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_LOGGING_EXTRA_LOGGERS=landmarks \
    LANDMARKS_STORAGE_DIR=/data/storage

WORKDIR /app
COPY pyproject.toml README.md ./
COPY landmarks ./landmarks
COPY tasks ./tasks
COPY flows ./flows
RUN pip install --no-cache-dir . && mkdir -p /data/storage

CMD ["prefect", "worker", "start", "--pool", "landmarks", "--type", "process"]
