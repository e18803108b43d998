"""Kim's CNN on MR (10-fold CV): python -m experiments.mr --fold=K | --cv [--variant=...]."""

from experiments import common

if __name__ == "__main__":
    common.run(dataset="mr", default_model="textcnn")
