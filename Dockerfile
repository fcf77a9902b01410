# frontdesk service image: `docker build -t frontdesk .` then
#   docker run -p 8080:8080 -v $PWD/service:/etc/frontdesk frontdesk
# where service/ holds frontdesk.yaml and the model directory it names (model: model).
# The image serves linear models, exported (ONNX) encoder tiers (`frontdesk export`) and API LLMs
# (OpenAI-compatible, Anthropic). Add extras with --build-arg, e.g. EXTRAS=server,preprocess,sinks,
# postgres,encoder-onnx,llm,llm-local for the offline llama.cpp LLM, or ...,encoder for torch weights.
# (deploy/ holds the Grafana dashboard and Prometheus rules, not a service config.)
FROM python:3.11-slim
ARG EXTRAS=server,preprocess,sinks,postgres,encoder-onnx,llm

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
WORKDIR /opt/frontdesk
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
RUN pip install --no-cache-dir -c constraints.txt ".[${EXTRAS}]" \
    && useradd --system --home /var/lib/frontdesk frontdesk && mkdir -p /var/lib/frontdesk \
    && chown frontdesk /var/lib/frontdesk
USER frontdesk
WORKDIR /var/lib/frontdesk
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz')"
CMD ["frontdesk", "serve", "--config", "/etc/frontdesk/frontdesk.yaml", "--host", "0.0.0.0", "--port", "8080"]
