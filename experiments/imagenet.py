"""Train on imagenet2012 (default model resnet50): `python -m experiments.imagenet [flags]`."""

from experiments import common

if __name__ == "__main__":
    common.run(dataset="imagenet2012", default_model="resnet50")
