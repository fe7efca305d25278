"""File formats the stages hand each other: MMSDK ``.csd``, word alignment, the HDF5 cache."""
