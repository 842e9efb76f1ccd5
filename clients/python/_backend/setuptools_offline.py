"""PEP 517 build backend: setuptools.build_meta, usable offline.

pip builds a package in an isolated environment holding only [build-system].requires, which it
downloads; with `--no-index` (offline) that fails although Debian's python3-setuptools and
python3-wheel are installed. So pyproject.toml requires nothing and names this backend, which
makes the interpreter's own site-packages (where those packages are) importable when the
isolated environment lacks setuptools, then hands every hook to setuptools.build_meta.
With setuptools importable (a venv that has it, or --no-build-isolation) nothing changes.
"""
import site
import sys


def _setuptools_build_meta():
    try:
        import setuptools.build_meta as bm
        return bm
    except ImportError:
        pass
    dirs = list(site.getsitepackages()) + list(site.getsitepackages([sys.base_prefix]))
    dirs += [p for p in ("/usr/lib/python3/dist-packages",) if p not in dirs]
    for d in dirs:
        if d not in sys.path:
            sys.path.append(d)  # after the isolated environment's own paths
    try:
        import setuptools.build_meta as bm
        return bm
    except ImportError as e:
        raise ImportError("building relureg needs setuptools and wheel (Debian: apt-get install "
                          "python3-setuptools python3-wheel, or make deps)") from e


_bm = _setuptools_build_meta()


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


prepare_metadata_for_build_wheel = _bm.prepare_metadata_for_build_wheel
build_wheel = _bm.build_wheel
build_sdist = _bm.build_sdist
if hasattr(_bm, "build_editable"):
    prepare_metadata_for_build_editable = _bm.prepare_metadata_for_build_editable
    build_editable = _bm.build_editable
