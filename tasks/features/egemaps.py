"""Feature set ``egemaps`` (audio): openSMILE eGeMAPS v02 low-level descriptors (25 per 10 ms).

The ``opensmile`` Python package wraps the openSMILE C library (``SMILEapi``) bundled in the
wheel; its package import pulls in ``audinterface`` → ``audformat`` → ``pyarrow``, which
fails in this environment (pyarrow built for NumPy 2, NumPy 1.26 installed). So when
``import opensmile`` fails, this module loads only the package's ctypes binding
(``opensmile/core/lib.py``, which needs nothing but NumPy) and drives it exactly as
``opensmile.Smile(eGeMAPSv02, LowLevelDescriptors)._extract`` does: 16-bit PCM written to
the external source, LLD frames collected from the external sink with their times.
Everything runs offline: the config files and the library ship inside the wheel.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from tasks.contracts import ExtractError
from tasks.features import register
from tasks.features.media import ClipInput, decode_audio

N_FEATURES = 25
_SOURCE, _SINK = "extsource", "extsink"  # opensmile.config component names
_LOCK = threading.Lock()
_LIB: list[ModuleType] = []


def _package_root() -> Path:
    spec = importlib.util.find_spec("opensmile")
    if spec is None or not spec.submodule_search_locations:
        raise ExtractError("the opensmile package is not installed (pip install opensmile)")
    return Path(next(iter(spec.submodule_search_locations)))


def _lib() -> ModuleType:
    """``opensmile.core.lib`` (the ctypes binding), loaded without the package's heavy init."""
    with _LOCK:
        if not _LIB:
            path = _package_root() / "core" / "lib.py"
            spec = importlib.util.spec_from_file_location("_msaflow_opensmile_lib", path)
            if spec is None or spec.loader is None:
                raise ExtractError(f"{path}: cannot load the openSMILE binding")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            _LIB.append(module)
        return _LIB[0]


def _options(config_root: Path) -> dict[str, object]:
    """The include files ``opensmile.Smile._options`` sets for LLD output from raw samples."""
    shared = config_root / "shared"
    return {
        "source": str(shared / "standard_external_wave_input.conf.inc"),
        "sink": str(shared / "standard_external_data_output_single.conf.inc"),
        "sinkLevel": "lld",
        "bufferModeRbConf": str(shared / "BufferModeRb.conf.inc"),
        "bufferModeRbLagConf": str(shared / "BufferModeRbLag.conf.inc"),
        "bufferModeConf": str(shared / "BufferMode.conf.inc"),
        "frameModeFunctionalsConf": str(shared / "FrameModeFunctionals.conf.inc"),
    }


def _smile(sample_rate: int) -> tuple[object, Path]:
    lib = _lib()
    config_root = _package_root() / "core" / "config"
    conf = config_root / "egemaps" / "v02" / "eGeMAPSv02.conf"
    if not conf.is_file():
        raise ExtractError(f"{conf}: eGeMAPSv02 config missing from the opensmile package")
    options = _options(config_root)
    options.update(sampleRate=sample_rate, nBits=16)
    smile = lib.OpenSMILE()
    smile.initialize(config_file=str(conf), options=options, loglevel=0, log_file="",
                     debug=False)
    return smile, conf


def feature_names(sample_rate: int = 16000) -> list[str]:
    """The 25 eGeMAPS v02 LLD names, as openSMILE reports them."""
    smile, _ = _smile(sample_rate)
    try:
        n = smile.external_sink_get_num_elements(_SINK)
        return [smile.external_sink_get_element_name(_SINK, i) for i in range(n)]
    finally:
        smile.free()


def extract_egemaps(
    samples: np.ndarray, sample_rate: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(features (n, 25) float32, intervals (n, 2), names)`` of mono float samples."""
    y = np.asarray(samples, dtype=np.float64).reshape(-1)
    if y.size == 0:
        raise ExtractError("no audio samples")
    if not np.isfinite(y).all():
        raise ExtractError("audio has NaN/Inf samples")
    # openSMILE takes 16-bit PCM; clip rather than wrap around on overs.
    pcm = np.clip(np.round(y * 32768), -32768, 32767).astype(np.int16)
    names = feature_names(sample_rate)
    rows: list[np.ndarray] = []
    times: list[tuple[float, float]] = []

    def sink(data: np.ndarray, meta: object) -> None:
        rows.append(np.array(data, dtype=np.float32))
        times.append((float(meta.time), float(meta.time + meta.lengthSec)))

    smile, _ = _smile(sample_rate)
    try:
        smile.external_sink_set_callback_ex(_SINK, sink)
        smile.external_audio_source_write_data(_SOURCE, pcm.tobytes())
        smile.external_audio_source_set_eoi(_SOURCE)
        smile.run()
    finally:
        smile.free()
    if not rows:
        raise ExtractError(f"audio too short for eGeMAPS ({y.size / sample_rate:.3f} s)")
    features = np.vstack(rows)
    if not np.isfinite(features).all():
        raise ExtractError("eGeMAPS features have NaN/Inf values")
    return features, np.array(times, dtype=np.float64), names


@register(
    "egemaps",
    modality="audio",
    keys=("sample_rate",),  # fixed 10 ms frames: hop_seconds does not apply
    description="openSMILE eGeMAPS v02 low-level descriptors, 10 ms hop",
    dims=lambda section, width: feature_names(section.sample_rate),
)
def compute(clip: ClipInput, section: Any) -> tuple[dict[str, np.ndarray], list[str]]:
    """One clip's eGeMAPS frames from its mono audio at ``extract.audio.sample_rate``."""
    notes: list[str] = []
    samples = decode_audio(clip.media, section.sample_rate, clip.start, clip.end, notes)
    features, intervals, _ = extract_egemaps(samples, section.sample_rate)
    return {"features": features, "intervals": intervals}, notes
