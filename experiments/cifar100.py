"""Train on cifar100 (default model resnet56): `python -m experiments.cifar100 [flags]`."""

from experiments import common

if __name__ == "__main__":
    common.run(dataset="cifar100", default_model="resnet56")
