# The one image for every boxoffice process (API, workers, beat, Flower, gateway sandbox, migration);
# docker-compose.yml and deploy/ choose the command. No build tools needed: every pin has a wheel.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
RUN useradd --create-home --uid 10001 boxoffice \
    && mkdir -p /app/instance /data \
    && chown -R boxoffice /app/instance /data
USER boxoffice

EXPOSE 8000 5555 8100 9100
CMD ["gunicorn", "--config", "web/gunicorn_conf.py", "wsgi:app"]
