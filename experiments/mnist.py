"""Train on mnist (default model lenet5): `python -m experiments.mnist [flags]`."""

from experiments import common

if __name__ == "__main__":
    common.run(dataset="mnist", default_model="lenet5")
