"""A run's checkpoints for research code: `load(workdir)` gives `(model, variables, config)`.

The checkpointing itself (saving, verification, resume) lives in `cnnjax.train.checkpoints`;
this module is its small public face.
"""

from cnnjax.train.checkpoints import DamagedCheckpointError, checkpoint_dir, load, read_config

__all__ = ["DamagedCheckpointError", "checkpoint_dir", "load", "read_config"]
