"""`export`: one variant of the HDF5 cache → a file the field's tools read (not a DVC stage)."""

from __future__ import annotations

from prefect import flow, task

from flows.common import load, publish_markdown, summary_markdown
from tasks import export


@task(name="export-mmsa")
def export_task(params_path: str, variant: str | None = None, out: str | None = None,
                overrides: dict | None = None, normalize: bool = False) -> dict:
    """Write MMSA's processed pickle of one cache variant."""
    params, paths = load(params_path, overrides)
    return export.export_mmsa(params, paths, variant, out, normalize)


@flow(name="export", flow_run_name="export-{fmt}", log_prints=True)
def export_flow(fmt: str = "mmsa", variant: str | None = None, out: str | None = None,
                params_path: str = "params.yaml", overrides: dict | None = None,
                normalize: bool = False) -> dict:
    """The dataset's cache variant as ``fmt`` (mmsa: MMSA's pickle, ``custom_feature=``)."""
    if fmt not in export.FORMATS:
        raise export.ExportError(f"export format {fmt!r}: expected one of {export.FORMATS}")
    summary = export_task(params_path, variant, out, overrides, normalize)
    publish_markdown("export-summary", summary_markdown(f"Export ({fmt})", summary))
    print(
        f"export: {summary['file']} ({summary['bytes'] / 2**20:.1f} MB; "
        f"{summary['train_clips']}/{summary['valid_clips']}/{summary['test_clips']} clips "
        f"train/valid/test; {summary['variant']}"
        f"{', z-scored audio/vision' if normalize else ''}; {summary['seconds']} s)"
    )
    return summary
