"""A library built against another framework version is refused with one rebuild message."""
import pytest

from ganops import _loader


def test_version_mismatch_says_to_rebuild():
    with pytest.raises(_loader.BuildMismatchError, match=r"built against torch .* but torch 0\.0\.1 is imported.*Rebuild"):
        _loader.check_built_against("torch", "torch", "0.0.1")


def test_missing_library_says_how_to_build(tmp_path):
    with pytest.raises(ImportError, match="_ganops_torch is missing.*Rebuild"):
        _loader.library_path(str(tmp_path), "_ganops_torch")


def test_loader_failure_becomes_rebuild_message(tmp_path):
    def failing_load(path):
        raise OSError("undefined symbol: _ZN3c105ErrorC2E")

    with pytest.raises(_loader.BuildMismatchError, match="undefined symbol.*Rebuild"):
        _loader.load_checked(failing_load, str(tmp_path / "_ganops_torch.so"), "torch")


def test_built_without_the_framework(monkeypatch):
    from ganops import _core

    monkeypatch.setattr(_core, "build_info", lambda: {"torch": ""})
    with pytest.raises(_loader.BuildMismatchError, match="built without torch.*Rebuild"):
        _loader.check_built_against("torch", "torch", "2.13.0")
