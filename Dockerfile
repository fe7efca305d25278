# msaflow images: the pipeline with every dependency pinned (constraints.txt).
#
#   CUDA (default): docker build -t msaflow:cuda .
#       PyPI's torch wheels bundle the CUDA runtime; run with `docker run --gpus all ...`
#       (NVIDIA Container Toolkit on the host) and training uses the GPU automatically.
#   CPU:            docker build -t msaflow:cpu --build-arg TORCH_INDEX_URL=<PyTorch CPU wheel index> .
#       a much smaller image; everything runs on the CPU.
#
#   docker run --rm -v "$PWD/data:/app/data" -v "$PWD/reports:/app/reports" msaflow:cuda make demo
#   docker run --rm -p 4200:4200 msaflow:cpu make ui      (Prefect UI at http://localhost:4200)
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

# git: DVC needs a repository; libgl/libglib: OpenCV and MediaPipe at run time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git make libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PREFECT_SERVER_ANALYTICS_ENABLED=false
WORKDIR /app

ARG TORCH_INDEX_URL=""
COPY constraints.txt ./
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
      pip install --index-url "$TORCH_INDEX_URL" "$(grep '^torch==' constraints.txt)"; \
    else \
      pip install "$(grep '^torch==' constraints.txt)"; \
    fi

COPY pyproject.toml README.md ./
COPY msaflow ./msaflow
COPY flows ./flows
COPY tasks ./tasks
COPY models ./models
RUN pip install -c constraints.txt -e ".[dev]"

COPY . .
# The Makefile's venv step is not needed in the image: point it at the system interpreter.
RUN mkdir -p .venv/bin && ln -s "$(command -v python)" .venv/bin/python \
 && for tool in msaflow dvc prefect pytest ruff; do ln -s "$(command -v $tool)" .venv/bin/$tool; done \
 && printf '' > .venv/bin/activate && touch .venv/.installed-stamp \
 && git config --global user.name msaflow && git config --global user.email msaflow@localhost \
 && (git rev-parse --git-dir >/dev/null 2>&1 || (git init -q && git add -A && git commit -qm image))

# `make ui` in a container listens on every interface, so `docker run -p 4200:4200 ... make ui`
# reaches it from the host (git identity above: `dvc exp run` commits experiments).
ENV UI_HOST=0.0.0.0

EXPOSE 4200
CMD ["make", "demo"]
