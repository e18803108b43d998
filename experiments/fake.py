"""Train on synthetic `fake` images (benchmarks, smoke tests): `python -m experiments.fake`."""

from experiments import common

if __name__ == "__main__":
    common.run(dataset="fake", default_model="lenet5")
