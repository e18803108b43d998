"""Kim's CNN on SST-2 (GLUE's): python -m experiments.sst2 [--variant=... --word_vectors=PATH]."""

from experiments import common

if __name__ == "__main__":
    common.run(dataset="sst2", default_model="textcnn")
