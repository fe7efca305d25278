"""Training parts the ``train``/``evaluate``/``predict`` stages share: the LightningModule and
the checkpoint format."""
