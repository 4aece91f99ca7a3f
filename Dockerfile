# The default image of compiled Kubeflow stages: ghcr.io/jupyter-pipeline/jupyter-pipeline:<version>
# (jupyter_pipeline.kfp.compiler.DEFAULT_IMAGE). It holds the package (stage runner, kfp SDK,
# papermill, an ipykernel named python3) and Keras on JAX with CUDA 12, so `gpu:` stages use the
# node's NVIDIA GPU; on a node without one JAX falls back to the CPU.
#
#   docker build -t ghcr.io/jupyter-pipeline/jupyter-pipeline:0.1.0 .
#   docker build --build-arg JAX_EXTRA= -t jupyter-pipeline:cpu .      # CPU-only, ~2 GB smaller
#
# Use another image per notebook (metadata.jupyter_pipeline.image) or per stage (image: tag); it
# must have jupyter-pipeline installed, since each stage's component imports it.
FROM python:3.11-slim

ARG JAX_EXTRA="[cuda12]"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    KERAS_BACKEND=jax

WORKDIR /opt/jupyter-pipeline
# Dependencies first (cached layer), then the package itself.
COPY pyproject.toml README.md ./
COPY jupyter_pipeline ./jupyter_pipeline
RUN pip install ".[examples]" "jax${JAX_EXTRA}" \
    && python -m ipykernel install --sys-prefix --name python3 \
    && python -c "import jupyter_pipeline.kfp.entry, kfp, papermill, keras"

# Stages run as an unprivileged user in a writable working directory.
RUN useradd --create-home --uid 1000 pipeline
USER pipeline
WORKDIR /home/pipeline
