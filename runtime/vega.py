"""The page DVC draws its plots into, carrying Vega, Vega-Lite and vega-embed itself.

`dvc plots show` / `dvc plots diff` write an HTML page that loads those three scripts from a
CDN: offline, it is blank. `.dvc/config` names ``.dvc/plots/offline.html`` as the page
template instead (``[plots] html_template``); this module writes it, with the scripts that
the ``vl-convert-python`` package ships (``vl_convert.javascript_bundle()``: about 0.9 MB,
the Vega versions vl-convert renders with). ``make install`` writes it (``python -m
runtime.vega``), and ``msaflow repro`` / ``exp`` write it where it is missing; it is
git-ignored (generated from the installed package).
"""

from __future__ import annotations

import sys
from pathlib import Path

TEMPLATE = Path(".dvc") / "plots" / "offline.html"

# DVC puts one <div> and one vegaEmbed(...) <script> per plot where {plot_divs} is (by
# str.replace); the page must not name {scripts}, which DVC fills with the CDN's tags.
PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>DVC plots</title>
<style>body { font-family: sans-serif; }</style>
<script>BUNDLE</script>
</head>
<body>
{plot_divs}
</body>
</html>
"""


def page() -> str:
    """The template's text (Vega, Vega-Lite and vega-embed inlined)."""
    import vl_convert

    bundle = vl_convert.javascript_bundle().replace("</script", "<\\/script")
    return PAGE.replace("BUNDLE", bundle)


def write_template(root: Path | str = ".", force: bool = False) -> Path | None:
    """Write ``<root>/.dvc/plots/offline.html`` (when missing, or always with ``force``);
    the path, or None where ``root`` is no DVC project."""
    root = Path(root)
    if not (root / ".dvc").is_dir():
        return None
    path = root / TEMPLATE
    if path.is_file() and not force:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page(), encoding="utf-8")
    tmp.replace(path)
    return path


if __name__ == "__main__":
    written = write_template(sys.argv[1] if len(sys.argv) > 1 else ".", force=True)
    print(f"DVC plots page template: {written}" if written else "no .dvc/ here")
