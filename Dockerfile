# irde serve in a container: the runtime and the serve extra only (no torch, no Ray).
#   docker build -t irde-onnx-serve .
#   docker run --rm -p 127.0.0.1:8000:8000 -v "$PWD/my-router:/router" \
#       -e IRDE_TOKEN=secret -e IRDE_CLIENT_TOKEN=client-key irde-onnx-serve
# Listening beyond loopback needs client keys (IRDE_CLIENT_TOKEN or --client-keys FILE) or
# --allow-anonymous after the image name: without either the server stops at start.
# The router folder is a volume, so every replica can mount the same one and reload it
# when another replica saves a change. Inside the container the server listens on all of
# the container's interfaces (that is what publishing a port needs); choose on the host
# which interface the port is published on (127.0.0.1 above).
#
# Reproducible: the base is an exact tag and every Python package an exact version
# (docker/constraints.txt, also for the build backend through PIP_CONSTRAINT). The tag is not
# pinned by digest here because the machines that maintain this file reach no container
# registry to read one; pin it where you build, with the digest you reviewed:
#   docker buildx imagetools inspect python:3.11.14-slim-bookworm    # the index digest
#   docker build --build-arg BASE_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest> .
# (or write it into the ARG below). A digest also freezes Debian's security updates:
# bump the tag or digest on a schedule.
ARG BASE_IMAGE=python:3.11.14-slim-bookworm
FROM ${BASE_IMAGE}

# the package's version (irde_onnx/_version.py) and address (pyproject's Source URL, a
# placeholder until the project has a public one); tests/test_packaging.py checks both
ARG BASE_IMAGE
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="irde-onnx-serve" \
      org.opencontainers.image.description="irde serve: an IR3DE prompt router (one ONNX graph) over HTTP, with an OpenAI-compatible gateway" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/irde-onnx/irde-onnx" \
      org.opencontainers.image.base.name="docker.io/library/${BASE_IMAGE}"

# ORT_DISABLE_TELEMETRY=1: onnxruntime (1.2x and later, Linux) otherwise keeps a device id in
# the user's cache folder and uploads usage events; a server image should not without the
# operator's choice (-e ORT_DISABLE_TELEMETRY=0 turns it back on).
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 ORT_DISABLE_TELEMETRY=1

WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY docker/constraints.txt ./docker/constraints.txt
COPY irde_onnx ./irde_onnx
COPY models/demo ./models/demo
RUN PIP_CONSTRAINT=/src/docker/constraints.txt pip install ".[serve]" && rm -rf /src \
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
