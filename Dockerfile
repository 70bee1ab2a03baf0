# The project's image: trainer, studies, MLflow server and optuna-dashboard.
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 curl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml requirements.lock README.md ./
COPY trainer ./trainer
COPY studies ./studies
# boto3: the MLflow server writes artifacts to the S3-compatible bucket (MinIO).
RUN pip install -c requirements.lock . boto3
EXPOSE 5000 8080
CMD ["studies", "--help"]
