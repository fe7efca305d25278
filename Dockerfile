# msaflow images: the pipeline with every dependency pinned (constraints.txt), in a venv at
# /opt/venv (Debian's own Python is externally managed, PEP 668; the venv serves any base).
#
#   CUDA (default): docker build -t msaflow:cuda .
#       PyPI's torch wheels bundle the CUDA runtime; run with `docker run --gpus all ...`
#       (NVIDIA Container Toolkit on the host) and training uses the GPU automatically.
#   CPU:            docker build -t msaflow:cpu --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .
#       a much smaller image; everything runs on the CPU. Without that index, a folder of
#       wheels served over HTTP does the same: --build-arg TORCH_FIND_LINKS=http://HOST:PORT/
#       (README "Docker": `python -m http.server` on a folder holding torch's CPU wheel).
#   Another base: --build-arg PYTHON_IMAGE=<an image with Python 3.11, venv and pip>.
#
#   docker run --rm -v "$PWD/data:/app/data" -v "$PWD/reports:/app/reports" msaflow:cuda make demo
#   docker run --rm -p 4200:4200 msaflow:cpu make ui      (Prefect UI at http://localhost:4200)
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

# git: DVC needs a repository; libgl/libglib: OpenCV and MediaPipe at run time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git make libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*

# The Makefile's environment is this venv (VENV), already installed: `make demo`, `make test`
# and `make ui` use it as they are.
ENV VIRTUAL_ENV=/opt/venv VENV=/opt/venv PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PREFECT_SERVER_ANALYTICS_ENABLED=false
# Behind a proxy with its own certificate authority, hand pip the CA bundle as a build secret
# (--secret id=pip_cert,src=/etc/ssl/certs/ca-certificates.crt); it stays out of the image.
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
 && python3 -m venv /opt/venv && pip install --quiet --upgrade pip
WORKDIR /app

ARG TORCH_INDEX_URL=""
ARG TORCH_FIND_LINKS=""
COPY constraints.txt ./
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
 && pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} \
        ${TORCH_FIND_LINKS:+--find-links "$TORCH_FIND_LINKS"} "$(grep '^torch==' constraints.txt)"

COPY pyproject.toml README.md ./
COPY config ./config
COPY models ./models
COPY tasks ./tasks
COPY runtime ./runtime
COPY flows ./flows
COPY msaflow ./msaflow
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
 && PYTHONWARNINGS="ignore:Editable installation" pip install -c constraints.txt -e ".[dev]"

COPY . .
# DVC and `dvc exp run` need a repository with a git identity.
RUN touch /opt/venv/.installed-stamp && python -m runtime.vega \
 && git config --global user.name msaflow && git config --global user.email msaflow@localhost \
 && (git rev-parse --git-dir >/dev/null 2>&1 || (git init -q && git add -A && git commit -qm image))

# `make ui` in a container listens on every interface, so `docker run -p 4200:4200 ... make ui`
# reaches it from the host.
ENV UI_HOST=0.0.0.0

EXPOSE 4200
CMD ["make", "demo"]
