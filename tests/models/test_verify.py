"""Model files are verified before they are loaded and never executed.

Exported folders are held to their manifest's SHA-256; folders and files without one (a user's
Hugging Face folder, a GGUF file) to the hashes recorded at their first use. Every test runs with
its own cache (``INSTRUCTFAST_CACHE``), so first-use records do not leak between tests.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

import instructfast
from instructfast.cli import main
from instructfast.models import causal_lm, verify
from instructfast.models.onnx_runtime import OnnxModel
from instructfast.models.registry import ModelSource, sha256_file

PACKAGE = Path(instructfast.__file__).parent
TABLE = pa.table({"instruction": ["Say hi."], "output": ["Hello there, friend."]})


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTRUCTFAST_CACHE", str(tmp_path / "cache"))


def flip_byte(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if at is None else at
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def fake_export(folder: Path, files: dict[str, bytes]) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    manifest = {
        "format": "instructfast-onnx",
        "kind": "reward-pair",
        "source": "/models/rm",
        "files": {n: sha256_file(folder / n) for n in files},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return manifest


# --------------------------------------------------------------------------- with a manifest


@pytest.mark.slow  # shares the tiny exports with tests/models/test_export.py
def test_a_flipped_byte_in_model_onnx_is_refused_with_both_hashes_and_the_command(tmp_path):
    from tests.tiny_models import exported

    folder = tmp_path / "rm"
    shutil.copytree(exported("reward-pair"), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    good = OnnxModel(folder)  # loads
    assert "match manifest.json" in good.source_record()["verified"]
    flip_byte(folder / "model.onnx")
    actual = sha256_file(folder / "model.onnx")
    with pytest.raises(instructfast.ModelIntegrityError) as e:
        instructfast.score(TABLE, indicators="reward", models={"reward": str(folder)})
    msg = str(e.value)
    assert f"{folder / 'model.onnx'}: sha256 is {actual}" in msg
    assert manifest["files"]["model.onnx"] in msg
    assert f"instructfast export reward-pair --from {manifest['source']} --to {folder} --overwrite" in msg
    assert isinstance(e.value, instructfast.ModelError) and isinstance(e.value, ValueError)


def test_truncated_or_missing_files_of_an_export(tmp_path):
    folder = tmp_path / "rm"
    manifest = fake_export(folder, {"model.onnx": b"\x08" * 4096, "tokenizer.json": b'{"version": "1.0"}' * 50})
    assert "2 files match manifest.json" in verify.verify_manifest(folder, manifest)
    with open(folder / "tokenizer.json", "r+b") as f:
        f.truncate(100)  # a partial copy
    with pytest.raises(
        instructfast.ModelIntegrityError, match=r"tokenizer\.json: sha256 is [0-9a-f]{64}, but .* records"
    ) as e:
        verify.verify_manifest(folder, manifest)
    assert "(100 bytes now)" in str(e.value)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(instructfast.ModelFileError, match=r"tokenizer\.json: missing from the exported model folder"):
        verify.verify_manifest(folder, manifest)


def test_cached_hashes_follow_size_and_mtime_full_rehashes_every_load(tmp_path):
    folder = tmp_path / "rm"
    manifest = fake_export(folder, {"model.onnx": b"weights" * 1000})
    verify.verify_manifest(folder, manifest)  # hashed once, cached by (path, size, mtime)
    st = (folder / "model.onnx").stat()
    flip_byte(folder / "model.onnx")
    os.utime(folder / "model.onnx", ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime: bit rot
    assert "hashes cached" in verify.verify_manifest(folder, manifest)  # "cached" trusts size + mtime
    with pytest.raises(instructfast.ModelIntegrityError):
        verify.verify_manifest(folder, manifest, mode="full")  # "full" reads every byte again
    flip_byte(folder / "model.onnx")  # an ordinary write: the mtime moves, so "cached" re-hashes too
    os.utime(folder / "model.onnx", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    flip_byte(folder / "model.onnx", at=0)
    with pytest.raises(instructfast.ModelIntegrityError):
        verify.verify_manifest(folder, manifest)


def test_verify_models_option_and_flag():
    opts = instructfast.ScoreOptions.build(options={"verify_models": "full"})
    assert opts.model.verify_models == "full"
    with pytest.raises(instructfast.OptionError, match="verify_models"):
        instructfast.ScoreOptions.build(options={"verify_models": "never"})
    from instructfast.cli import _score_options, build_parser

    args = build_parser().parse_args(["score", "in.jsonl", "-o", "o.parquet", "--verify-models", "full"])
    assert _score_options(args)["verify_models"] == "full"


# --------------------------------------------------------------------------- without a manifest


def test_first_use_records_hashes_and_later_loads_compare(tmp_path, capsys):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors").write_bytes(b"\x00" * 10_000)
    (folder / ".cache").mkdir()
    (folder / ".cache" / "download.metadata").write_text("ignored")  # hidden: download bookkeeping
    assert verify.verify_first_use(folder) == "first use: sha256 of 2 files recorded"
    assert "2 files match their first-use sha256" in verify.verify_first_use(folder, mode="full")
    store = json.loads((tmp_path / "cache" / verify.VERIFIED).read_text())
    assert str((folder / "model.safetensors").resolve()) in store
    with open(folder / "model.safetensors", "r+b") as f:
        f.truncate(4_000)
    with pytest.raises(instructfast.ModelIntegrityError) as e:
        verify.verify_first_use(folder)
    msg = str(e.value)
    assert "model.safetensors: sha256 is" in msg and "10,000 bytes then, 4,000 now" in msg
    assert f"instructfast models --rehash {folder}" in msg
    assert main(["models", "--rehash", str(folder)]) == 0  # replaced on purpose: record it anew
    assert "recorded the sha256 of 2 files" in capsys.readouterr().out
    assert "2 files match" in verify.verify_first_use(folder)


def test_a_truncated_gguf_is_refused_before_it_is_converted(tmp_path, monkeypatch):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    src = ModelSource("lm", "gguf", str(gguf), "models=")
    verify.verify_first_use(gguf)  # its first use
    with open(gguf, "r+b") as f:
        f.truncate(1000)

    def never(*a, **k):
        raise AssertionError("a file that failed verification was converted")

    monkeypatch.setattr(causal_lm, "gguf_to_folder", never)
    with pytest.raises(instructfast.ModelIntegrityError, match=r"model\.gguf: sha256 is .* first used"):
        causal_lm._folder_of(src)


def test_run_record_says_what_was_verified(tmp_path):
    from tests.tiny_models import tiny_llama

    folder = tiny_llama(tmp_path / "lm")
    out = instructfast.score(TABLE, indicators=["output_tokens"], models={"lm": str(folder)})
    (entry,) = instructfast.ScoreReport.from_table(out).run.models
    assert entry["location"] == str(folder) and entry["verified"].startswith("first use: sha256 of")
    out = instructfast.score(
        TABLE, indicators=["perplexity"], models={"lm": str(folder)}, options={"verify_models": "full"}
    )
    (entry,) = instructfast.ScoreReport.from_table(out).run.models
    assert "files match their first-use sha256 (re-hashed)" in entry["verified"]


# --------------------------------------------------------------------------- never executed


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            yield name, {k.arg: k.value for k in node.keywords}


def test_no_pickle_and_no_remote_code_anywhere_in_the_package():
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not {"pickle", "cPickle", "dill", "joblib", "cloudpickle"} & set(names), path
        for name, kw in _calls(tree):
            if "trust_remote_code" in kw:
                assert isinstance(kw["trust_remote_code"], ast.Constant) and kw["trust_remote_code"].value is False, (
                    path
                )
            if name == "load" and "map_location" in kw:  # torch.load
                assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, path
            if "allow_pickle" in kw:
                assert isinstance(kw["allow_pickle"], ast.Constant) and kw["allow_pickle"].value is False, path


def test_a_model_that_needs_its_own_code_is_refused(tmp_path):
    folder = tmp_path / "custom"
    folder.mkdir()
    cfg = {"model_type": "my_private_arch", "auto_map": {"AutoModelForCausalLM": "modeling_mine.MyModel"}}
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "modeling_mine.py").write_text("raise SystemExit('remote code ran')\n")
    src = ModelSource("lm", "hf-folder", str(folder), "models=")
    with pytest.raises(instructfast.ModelError, match="cannot be loaded"):
        causal_lm.load_causal_lm(src)


def test_local_folders_never_reach_the_hub(tmp_path, monkeypatch):
    import transformers

    seen = []

    def fake(name, **kw):
        seen.append(kw)
        raise OSError("stop here")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fake)
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with pytest.raises(instructfast.ModelError):
        causal_lm.load_lm_tokenizer(ModelSource("lm", "hf-folder", str(folder), "models="))
    assert seen == [{"local_files_only": True}]
    seen.clear()
    with pytest.raises(instructfast.ModelError):  # a hub id the user named is the one case that may fetch
        causal_lm.load_lm_tokenizer(ModelSource("lm", "hub-id", "org/name", "models="))
    assert seen == [{}]
