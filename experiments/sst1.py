"""Kim's CNN on SST-1 (5 classes, PTB trees): python -m experiments.sst1 [--variant=...]."""

from experiments import common

if __name__ == "__main__":
    common.run(dataset="sst1", default_model="textcnn")
