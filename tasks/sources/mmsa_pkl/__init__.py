"""Source ``mmsa_pkl``: MMSA's processed pickles → manifest and HDF5 cache (no extraction).

An MMSA pickle (``mosi/unaligned_50.pkl``, ``mosei/aligned_50.pkl``, ``sims/unaligned_39.pkl``
…) is a dict with ``train``/``valid``/``test``, each holding per-clip arrays: ``id``,
``raw_text``, ``text`` (N, L, 768 BERT features), ``text_bert`` (N, 3, L: token ids, attention
mask, segment ids), ``audio`` (N, La, Da), ``vision`` (N, Lv, Dv), ``audio_lengths`` and
``vision_lengths`` (unaligned only), ``regression_labels`` and often
``classification_labels`` / ``annotations`` (SIMS adds ``regression_labels_{T,A,V}``).
MMSA-FET's pickles pad ``text_bert`` to a length of its own. Our export's pickles
(``msaflow export mmsa``, tasks/formats/mmsa.py) add ``text_lengths`` and a top-level
``msaflow`` dict: read back, they give the HDF5 arrays they came from.

The data enters the DAG at the HDF5 layer: ``ingest`` writes the manifest from the ids and
labels, ``extract`` has nothing to do, ``cache`` writes the one variant the pickle holds in
the contract layout (docs/contracts.md "cache").

``dataset.root`` names a pickle, or MMSA's release folder (``Processed/``): there each variant
comes from its own pickle, ``unaligned_<n>.pkl`` and ``aligned_<n>.pkl``, and the cache
variants follow what the source holds (``held_variants``: by file name, nothing unpickled;
params resolution drops a ``cache.variants`` entry the source lacks, tasks/params.py).

Safety: unpickling can run arbitrary code. A file is opened only when the user names it
(``dataset.root`` / ``dataset.pkl.file``) or names the folder that holds it under MMSA's
release name; nothing else is searched for. It is read with an unpickler that only rebuilds
numpy arrays and plain Python containers, unless ``dataset.pkl.trusted: true`` says the file
is trusted. ``reader`` unpickles and checks, ``manifest`` and ``cache`` are the stages' steps;
this file registers the source (and says which variants it holds) without importing them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import Field

from config.schema import PluginParams
from tasks import sources
from tasks.contracts import SourceError


class PklParams(PluginParams):
    """``dataset.pkl``: the MMSA processed pickle to read."""


    # The pickle, relative to dataset.root (or absolute); None = dataset.root is the file.
    # Only this file is ever unpickled; pickles can run code, see `trusted`.
    file: str | None = Field(None, pattern=r"\.(pkl|pickle)$")
    # false: a numpy-only unpickler (refuses any other class); true: plain pickle.load.
    trusted: bool = False
    # Tokenizer/encoder of the pickle's text_bert ids and text features (SIMS:
    # bert-base-chinese); stored as the cache's text_encoder so a fine-tuned encoder matches.
    text_encoder: str = "bert-base-uncased"


class PickleFormatError(SourceError):
    """An MMSA pickle that does not have the published layout; names file, split and key."""


# MMSA's release names in a Processed/ folder: unaligned_50.pkl, aligned_50.pkl, unaligned_39.pkl
RELEASE_NAME = re.compile(r"^(unaligned|aligned)_\d+\.pkl$", re.IGNORECASE)
VARIANT_ORDER = ("unaligned", "aligned")


def variant_by_name(path: Path) -> str | None:
    """The variant a pickle's file name says (``aligned_50.pkl``), or None."""
    stem = path.name.lower()
    return "unaligned" if "unaligned" in stem else "aligned" if "aligned" in stem else None


def pickle_files(params: Any) -> dict[str, Path]:
    """variant → the pickle that holds it: the named file (keyed "" when its name does not
    say the variant), or each release pickle of the named folder."""
    ds = params.dataset
    root = Path(ds.root)
    if ds.pkl.file is None and root.is_dir():
        found: dict[str, list[Path]] = {}
        for path in sorted(root.iterdir()):
            if (match := RELEASE_NAME.match(path.name)) and path.is_file():
                found.setdefault(match.group(1).lower(), []).append(path)
        if not found:
            raise PickleFormatError(
                f"{root}: is a folder without MMSA's release pickles (unaligned_<n>.pkl, "
                "aligned_<n>.pkl); point dataset.root at the pickle, or name it with "
                "dataset.pkl.file"
            )
        for variant, paths in found.items():
            if len(paths) > 1:
                raise PickleFormatError(
                    f"{root}: holds {len(paths)} {variant} pickles "
                    f"({', '.join(p.name for p in paths)}); name one with dataset.pkl.file"
                )
        return {v: found[v][0] for v in VARIANT_ORDER if v in found}
    path = root / ds.pkl.file if ds.pkl.file is not None else root
    if path.is_dir():
        raise PickleFormatError(
            f"{path}: is a folder; name the MMSA pickle with dataset.pkl.file "
            "(e.g. -S dataset.pkl.file=unaligned_50.pkl) or point dataset.root at it"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path}: MMSA pickle not found (dataset.root, dataset.pkl.file)")
    return {variant_by_name(path) or "": path}


def held_variants(params: Any) -> tuple[str, ...] | None:
    """The variants the source holds, by file name (nothing unpickled); None when unknown
    (a missing root, which ingest reports, or a pickle whose name does not say)."""
    try:
        files = pickle_files(params)
    except (PickleFormatError, OSError):
        return None
    return None if "" in files else tuple(files)


def pickle_path(params: Any) -> Path:
    """The pickle the manifest comes from: the unaligned one when the folder has both."""
    return next(iter(pickle_files(params).values()))



def streams(params: Any) -> dict[str, str]:
    """What the cache's audio and vision streams are: the pickle's own arrays."""
    return {"audio": "mmsa_pkl:audio", "vision": "mmsa_pkl:vision"}


sources.register(sources.Source(
    name="mmsa_pkl",
    about="an MMSA processed pickle (tensors; enters at the HDF5 cache)",
    manifest="tasks.sources.mmsa_pkl.manifest:build_manifest_from_pickle",
    extract="tasks.sources.mmsa_pkl.manifest:skip_extraction",
    cache="tasks.sources.mmsa_pkl.cache:build_cache_from_pickle",
    streams=streams,
    variants=held_variants,
    section="pkl",
    params=PklParams,
))
