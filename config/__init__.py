"""The bottom layer: params (schema, dataset presets, loading, -S overrides), every artifact
path, the plugin registry type and the process defaults. Imports nothing of the project."""
