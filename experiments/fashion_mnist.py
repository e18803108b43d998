"""Train on fashion_mnist (default model lenet5): `python -m experiments.fashion_mnist [flags]`."""

from experiments import common

if __name__ == "__main__":
    common.run(dataset="fashion_mnist", default_model="lenet5")
