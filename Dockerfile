# One image for every service; the compose file picks the module to run.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md requirements/constraints.txt ./
COPY shared ./shared
COPY services ./services
COPY edge ./edge
RUN pip install --no-cache-dir -c constraints.txt . \
 && useradd --create-home --uid 10001 sensorpipe \
 && mkdir -p /data /state && chown sensorpipe /data /state
USER sensorpipe
# Services bind metrics to loopback unless told otherwise; in a container the
# Prometheus scraper is another container, so compose sets SENSORPIPE_METRICS_HOST.
EXPOSE 9100
ENTRYPOINT ["python", "-m"]
