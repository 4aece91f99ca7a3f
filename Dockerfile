# The default image of compiled Kubeflow stages: ghcr.io/jupyter-pipeline/jupyter-pipeline:<version>
# (jupyter_pipeline.kfp.compiler.DEFAULT_IMAGE). It holds the package (stage runner, kfp SDK,
# papermill, an ipykernel named python3) and Keras on JAX with CUDA 12, so `gpu:` stages use the
# node's NVIDIA GPU (the pip CUDA wheels bring the libraries; the node brings the driver); on a
# node without a GPU JAX falls back to the CPU.
#
#   docker build -t ghcr.io/jupyter-pipeline/jupyter-pipeline:0.1.0 .
#   docker build --build-arg JAX_EXTRA= -t jupyter-pipeline:cpu .      # CPU-only, much smaller
#
# Use another image per notebook (metadata.jupyter_pipeline.image) or per stage (image: tag); it
# must have jupyter-pipeline installed, since each stage's component imports it.

# 1. The wheel. Its build hook compiles the JupyterLab extension with jlpm (from jupyterlab) and
#    Node.js, which the runtime image does not need.
FROM python:3.11-slim AS wheel
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir "jupyterlab>=4.2,<5" build
WORKDIR /src
COPY . .
RUN python -m build --wheel --outdir /dist

# 2. The runtime image.
FROM python:3.11-slim
ARG JAX_EXTRA="[cuda12]"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    KERAS_BACKEND=jax
COPY --from=wheel /dist /dist
RUN WHEEL=$(ls /dist/jupyter_pipeline-*.whl) \
    && pip install "${WHEEL}[examples]" "jax${JAX_EXTRA}" \
    && rm -rf /dist \
    && python -m ipykernel install --sys-prefix --name python3 \
    && python -c "import jupyter_pipeline.kfp.entry, kfp, papermill, keras"
# Stages run as an unprivileged user in a writable working directory.
RUN useradd --create-home --uid 1000 pipeline
USER pipeline
WORKDIR /home/pipeline
# Without a command (Kubeflow gives each stage its own), the image serves the registered models of
# $JUPYTER_PIPELINE_STORE. The server binds loopback unless told otherwise; in a container it
# must listen on all interfaces, so say so here.
EXPOSE 8080
CMD ["jupyter-pipeline", "serve", "--host", "0.0.0.0", "--port", "8080"]
