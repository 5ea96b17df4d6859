"""Finding a framework's op library and refusing, with one clear message, to load one that was
built against another version of the framework (instead of an `undefined symbol`)."""
import glob
import os

REBUILD_HINT = (
    "Rebuild ganops against the installed version: "
    "`pip install --no-build-isolation --force-reinstall --no-deps .` in the ganops source tree "
    "(or `make build`)."
)


class BuildMismatchError(ImportError):
    """The compiled library does not match the framework that is imported."""


def library_path(package_dir, stem):
    """Path of `<stem>*.so` inside `package_dir`, or ImportError saying how to build it."""
    matches = sorted(glob.glob(os.path.join(package_dir, stem + "*.so")))
    if not matches:
        raise ImportError(
            f"ganops: the compiled library {stem} is missing from {package_dir}. It is built only "
            "when its framework is importable at build time. " + REBUILD_HINT
        )
    return matches[0]


def check_built_against(framework, key, imported_version):
    """Compare the version recorded at build time with the one imported now."""
    from ganops import _core

    built = _core.build_info().get(key, "")
    if not built:
        raise BuildMismatchError(
            f"ganops was built without {framework}: it was not importable when ganops was built. "
            + REBUILD_HINT
        )
    if built != imported_version:
        raise BuildMismatchError(
            f"ganops was built against {framework} {built or '(none)'} but {framework} "
            f"{imported_version} is imported. " + REBUILD_HINT
        )


def load_checked(load, path, framework):
    """Call load(path); turn a loader failure (undefined symbol, ...) into a rebuild message."""
    try:
        return load(path)
    except Exception as exc:  # torch raises OSError, TF raises tf.errors.NotFoundError
        raise BuildMismatchError(
            f"ganops could not load {os.path.basename(path)} into {framework}: {exc}. " + REBUILD_HINT
        ) from exc


def load_framework_library(framework, key, imported_version, package_dir, stem, load):
    """Find `stem` in `package_dir`, check the build matches the imported framework, load it."""
    path = library_path(package_dir, stem)
    check_built_against(framework, key, imported_version)
    return load_checked(load, path, framework)
