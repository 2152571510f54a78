# The image the Prefect worker (and the optional Dask workers) run: the project, its
# dependencies and prefect.yaml, so `landmarks deploy` run in it registers code at /app.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    NO_ALBUMENTATIONS_UPDATE=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_LOGGING_EXTRA_LOGGERS=landmarks \
    LANDMARKS_STORAGE_DIR=/data/storage \
    PREFECT_LOCAL_STORAGE_PATH=/data/storage/.prefect/results

WORKDIR /app
# Dependencies first, so a code change does not reinstall TensorFlow.
COPY pyproject.toml README.md ./
RUN mkdir -p landmarks tasks flows && touch landmarks/__init__.py tasks/__init__.py \
        flows/__init__.py \
    && pip install . && pip uninstall -y landmark-pipeline
COPY landmarks ./landmarks
COPY tasks ./tasks
COPY flows ./flows
COPY prefect.yaml ./
RUN pip install --no-deps . && mkdir -p /data/storage

CMD ["prefect", "worker", "start", "--pool", "landmarks", "--type", "process"]
