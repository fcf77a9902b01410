# frontdesk service image: `docker build -t frontdesk .` then
#   docker run -p 8080:8080 -v $PWD/deploy:/etc/frontdesk frontdesk
# where deploy/ holds frontdesk.yaml and the model directory it names (model: model).
FROM python:3.11-slim

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
WORKDIR /opt/frontdesk
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
RUN pip install --no-cache-dir -c constraints.txt '.[server,preprocess,sinks,postgres]' \
    && useradd --system --home /var/lib/frontdesk frontdesk && mkdir -p /var/lib/frontdesk \
    && chown frontdesk /var/lib/frontdesk
USER frontdesk
WORKDIR /var/lib/frontdesk
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz')"
CMD ["frontdesk", "serve", "--config", "/etc/frontdesk/frontdesk.yaml", "--host", "0.0.0.0", "--port", "8080"]
