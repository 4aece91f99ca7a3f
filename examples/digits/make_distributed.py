"""Write digits_distributed.ipynb from digits.ipynb: the same pipeline, its `train` stage on 2 workers.

    python examples/digits/make_distributed.py

Only the title, the setup imports and the `train` stage change; the other stages, the parameters
and the model stay the example's own, so the two notebooks' accuracies can be compared.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).parent

INTRO = """# Digits on two workers: data-parallel training as a pipeline stage

The digits example with its `train` stage tagged `workers:2`: the stage runs as two replicas
started together, each training on its half of every batch, with gradients summed across them
(JAX's CPU collectives locally, one pod per replica on Kubeflow). Rank 0's model is the stage's
output. Run it with
`jupyter-pipeline run examples/digits/digits_distributed.ipynb -p epochs 3`.
The notebook also runs top to bottom in JupyterLab, as one replica."""

TRAIN_NOTE = """## Train
Tagged `workers:2` and `gpu:1`: two replicas, each on a GPU node on Kubeflow (locally: two kernels on
the CPU). `distributed()` says which replica this is; `initialize_keras()` joins the replicas and
sets Keras's `DataParallel` over all their devices; `shard()` gives each replica its part of the data,
and the batch size is split so that one step still sees 32 images."""

TRAIN = """import keras

dist = distributed()
dist.initialize_keras()  # before any Keras computation
keras.utils.set_random_seed(seed)
model = keras.Sequential([
    keras.Input(shape=(64,), name="pixels"),
    keras.layers.Dense(hidden_units, activation="relu"),
    keras.layers.Dense(10, activation="softmax"),
])
model.compile(
    optimizer=keras.optimizers.Adam(learning_rate),
    loss="sparse_categorical_crossentropy",
    metrics=["accuracy"],
)
x_part, y_part = dist.shard(x_train, y_train)
history = model.fit(x_part, y_part, epochs=epochs, batch_size=32 // dist.world_size, verbose=0)
train_loss = float(history.history["loss"][-1])
log_metric("train_loss", train_loss)
print(f"replica {dist.rank} of {dist.world_size} trained on {len(x_part)} images")"""


def main(out: Path = HERE / "digits_distributed.ipynb") -> Path:
    nb = nbformat.read(HERE / "digits.ipynb", as_version=4)
    nb.metadata["jupyter_pipeline"]["name"] = "digits-distributed"
    for index, cell in enumerate(nb.cells):
        tags = cell.metadata.get("tags", [])
        if index == 0:
            cell.source = INTRO
        elif "setup" in tags:
            cell.source = cell.source.replace("from jupyter_pipeline import log_metric, log_model",
                                              "from jupyter_pipeline import distributed, log_metric, log_model")
        elif "stage:train" in tags:
            cell.source = TRAIN
            cell.metadata["tags"] = ["stage:train", "gpu:1", "workers:2"]
            nb.cells[index - 1].source = TRAIN_NOTE
        cell.id = f"digits-distributed-{index}"
    nbformat.write(nb, out)
    return out


if __name__ == "__main__":
    sys.stdout.write(f"wrote {main()}\n")
