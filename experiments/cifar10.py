"""Train on cifar10 (default model resnet20): `python -m experiments.cifar10 [flags]`."""

from experiments import common

if __name__ == "__main__":
    common.run(dataset="cifar10", default_model="resnet20")
