"""msaflow: the command line of the pipeline (`msaflow ...`), on top of everything else."""

__version__ = "0.1.0"
