"""Kim's CNN on cr (10-fold CV): python -m experiments.cr --fold=K | --cv [--variant=...]."""

from experiments import common

if __name__ == "__main__":
    common.run(dataset="cr", default_model="textcnn")
