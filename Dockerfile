# irde serve in a container: the runtime and the serve extra only (no torch, no Ray).
#   docker build -t irde-onnx-serve .
#   docker run --rm -p 127.0.0.1:8000:8000 -v "$PWD/my-router:/router" \
#       -e IRDE_TOKEN=secret irde-onnx-serve
# The router folder is a volume, so every replica can mount the same one and reload it
# when another replica saves a change. Inside the container the server listens on all of
# the container's interfaces (that is what publishing a port needs); choose on the host
# which interface the port is published on (127.0.0.1 above).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY irde_onnx ./irde_onnx
COPY models/demo ./models/demo
RUN pip install ".[serve]" && rm -rf /src \
    && useradd --create-home --uid 10001 irde

USER irde
WORKDIR /home/irde
EXPOSE 8000
# /healthz answers 200 while the server routes; its "status" is "degraded" when the mounted
# folder changed but cannot be loaded (the last good router is still served). The check
# fails then, so `docker ps` shows the container unhealthy while it keeps answering.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD python -c "import json, sys, urllib.request; h = json.load(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)); sys.exit(h['status'] != 'ok')"
ENTRYPOINT ["irde", "serve", "/router", "--host", "0.0.0.0", "--port", "8000"]
