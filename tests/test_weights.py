"""Weights: seeded noise, safe file loading, torch hub's cache, and downloads from a local server."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import io
import json
import math
import os
import pickle
import re
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from painterly import weights
from painterly.errors import InputError, WeightsError
from painterly.network import VGGFeatures, conv_indices


@pytest.fixture(autouse=True)
def hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point torch hub and painterly's cache into tmp_path; return hub's checkpoints folder."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("PAINTERLY_HOME", str(tmp_path / "painterly"))
    return tmp_path / "hub" / "checkpoints"


@pytest.fixture(scope="module")
def vgg16_full() -> dict[str, torch.Tensor]:
    """A torchvision-style vgg16 dict: random features plus (small, fake) classifier entries."""
    state = weights.random_weights("vgg16", seed=3)
    for i in (0, 3, 6):
        state[f"classifier.{i}.weight"] = torch.randn(4, 8)
        state[f"classifier.{i}.bias"] = torch.randn(4)
    return state


@pytest.fixture(scope="module")
def vgg16_bytes(vgg16_full: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(vgg16_full, buffer)
    return buffer.getvalue()


def assert_same_features(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    feature_keys = {k for k in want if k.startswith("features.")}
    assert set(got) == feature_keys  # classifier entries dropped
    for key in feature_keys:
        assert got[key].dtype == torch.float32
        assert torch.equal(got[key], want[key]), key


def one_line_error(excinfo: pytest.ExceptionInfo[WeightsError], *needles: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    assert "weights_only=False" not in message and "Re-running" not in message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


# --- random -----------------------------------------------------------------------------------


def test_random_weights_are_seeded_and_torchvision_like() -> None:
    rng_before = torch.get_rng_state()
    a = weights.load_weights("vgg19", "random", seed=1)
    b = weights.load_weights("vgg19", "random", seed=1)
    c = weights.load_weights("vgg19", "random", seed=2)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is left alone
    assert set(a) == {f"features.{i}.{k}" for i in conv_indices("vgg19") for k in ("weight", "bias")}
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not any(torch.equal(a[k], c[k]) for k in a if k.endswith("weight"))
    assert all(not a[k].any() for k in a if k.endswith("bias"))
    # Kaiming normal, fan-out mode: std = sqrt(2 / (512 * 3 * 3)) for conv5_1.
    assert a["features.28.weight"].std().item() == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.01)


def test_random_weights_load_into_the_network() -> None:
    state = weights.load_weights("vgg16", "random", seed=0)
    net = VGGFeatures("vgg16", ["relu5_3"], state)
    assert torch.equal(net.features[28].weight, state["features.28.weight"])
    out = net(torch.rand(1, 3, 32, 32))["relu5_3"]
    assert torch.isfinite(out).all() and out.abs().sum() > 0


def test_unknown_model_is_an_input_error() -> None:
    with pytest.raises(InputError, match="vgg16-hed"):
        weights.load_weights("alexnet", "random")


# --- files ------------------------------------------------------------------------------------


def test_full_torchvision_dict_round_trips(tmp_path: Path, vgg16_full: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "mine.pth"
    torch.save(vgg16_full, path)
    assert_same_features(weights.load_weights("vgg16", str(path)), vgg16_full)


def test_prefixless_keys_are_accepted(tmp_path: Path, vgg16_full: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "bare.pth"
    torch.save({k.removeprefix("features."): v for k, v in vgg16_full.items() if "features" in k}, path)
    assert_same_features(weights.load_weights("vgg16", path), vgg16_full)


def test_safetensors_file_loads(tmp_path: Path, vgg16_full: dict[str, torch.Tensor]) -> None:
    safetensors_torch = pytest.importorskip("safetensors.torch")
    path = tmp_path / "mine.safetensors"
    safetensors_torch.save_file({k: v for k, v in vgg16_full.items() if "features" in k}, str(path))
    assert_same_features(weights.load_weights("vgg16", path), vgg16_full)


def test_safetensors_without_the_package_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mine.safetensors"
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    monkeypatch.setitem(sys.modules, "safetensors", None)  # makes the import fail
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    with pytest.raises(WeightsError) as excinfo:
        weights.load_weights("vgg16", path)
    one_line_error(excinfo, "mine.safetensors", "pip install safetensors")


class Payload:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _bad_files(tmp_path: Path, good: bytes) -> dict[str, tuple[Path, str]]:
    """name -> (file, a fragment the error must contain)."""
    files: dict[str, tuple[Path, str]] = {}

    def add(name: str, data: bytes, needle: str) -> None:
        path = tmp_path / f"{name}.pth"
        path.write_bytes(data)
        files[name] = (path, needle)

    add("truncated", good[: len(good) // 2], "truncated")
    add("empty", b"", "empty")
    add("html", b"<!DOCTYPE html>\n<html><body><h1>404 Not Found</h1></body></html>\n", "HTML")
    marker = tmp_path / "payload-ran"
    buffer = io.BytesIO()
    torch.save({"features.0.weight": Payload(marker)}, buffer)
    add("pickle_zip", buffer.getvalue(), "refused")
    add("pickle_raw", pickle.dumps({"features.0.weight": Payload(marker)}), "refused")
    buffer = io.BytesIO()
    torch.save([torch.zeros(3)], buffer)
    add("list", buffer.getvalue(), "not a state dict")
    files["directory"] = (tmp_path / "a_directory.pth", "directory")
    files["directory"][0].mkdir()
    files["missing"] = (tmp_path / "nowhere.pth", "does not exist")
    return files


BAD_KINDS = ["truncated", "empty", "html", "pickle_zip", "pickle_raw", "list", "directory", "missing"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_files_fail_in_one_line(tmp_path: Path, vgg16_bytes: bytes, kind: str) -> None:
    path, needle = _bad_files(tmp_path, vgg16_bytes)[kind]
    with pytest.raises(WeightsError) as excinfo:
        weights.load_weights("vgg16", path)
    one_line_error(excinfo, path.name, needle)
    assert not (tmp_path / "payload-ran").exists()  # the pickle payload never ran


@pytest.mark.parametrize(
    "change, needle",
    [
        (lambda s: s.update({"features.0.weight": torch.zeros(64, 3, 5, 5)}), "(64, 3, 5, 5)"),
        (lambda s: s.pop("features.28.bias"), "'features.28.bias'"),
        (lambda s: s.update({"features.16.weight": torch.zeros(3)}), "wrong model"),
        (lambda s: s.update({"features.2.bias": torch.full((64,), math.nan)}), "NaN"),
        (lambda s: s.update({"features.2.bias": torch.zeros(64, dtype=torch.int64)}), "float tensor"),
    ],
    ids=["shape", "missing", "extra", "nan", "int"],
)
def test_wrong_contents_fail_in_one_line(tmp_path: Path, change, needle: str) -> None:
    state = weights.random_weights("vgg16")
    change(state)
    path = tmp_path / "odd.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError) as excinfo:
        weights.load_weights("vgg16", path)
    one_line_error(excinfo, "odd.pth", needle)


def test_vgg19_file_is_not_taken_for_vgg16(tmp_path: Path) -> None:
    path = tmp_path / "vgg19.pth"
    torch.save(weights.random_weights("vgg19"), path)
    with pytest.raises(WeightsError) as excinfo:
        weights.load_weights("vgg16", path)
    one_line_error(excinfo, "vgg19.pth")


# --- torch hub cache and downloads --------------------------------------------------------------


def no_network(*args: object, **kwargs: object) -> None:
    raise AssertionError("tried the network")


def put_in_hub(hub_dir: Path, data: bytes, monkeypatch: pytest.MonkeyPatch, prefix: str | None = None) -> Path:
    """``data`` in the hub cache as vgg16, under a torchvision-style name carrying its hash prefix."""
    name = f"vgg16-{prefix or hashlib.sha256(data).hexdigest()[:8]}.pth"
    serve_as_vgg16(monkeypatch, "http://127.0.0.1:9/" + name, name)
    hub_dir.mkdir(parents=True, exist_ok=True)
    (hub_dir / name).write_bytes(data)
    return hub_dir / name


def test_hub_cache_is_reused_without_network_and_recorded(
    hub_dir: Path, vgg16_full, vgg16_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(weights.urllib.request, "urlopen", no_network)
    path = put_in_hub(hub_dir, vgg16_bytes, monkeypatch)
    assert weights.cache_status("vgg16").state == "unverified"
    assert_same_features(weights.load_weights("vgg16"), vgg16_full)
    record = json.loads((hub_dir / (path.name + ".sha256.json")).read_text())  # hashed once, on first use
    assert record["sha256"] == hashlib.sha256(vgg16_bytes).hexdigest() and record["size"] == len(vgg16_bytes)
    assert weights.cache_status("vgg16").state == "verified"

    def no_hashing(path: Path) -> str:
        raise AssertionError("hashed again")

    monkeypatch.setattr(weights.checksums, "sha256_file", no_hashing)  # later loads only stat the file
    assert_same_features(weights.load_weights("vgg16"), vgg16_full)


def test_hub_file_whose_hash_disagrees_with_its_name_is_refused(
    hub_dir: Path, vgg16_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch hub checks the name's prefix only while downloading; painterly checks a file found there too."""
    path = put_in_hub(hub_dir, vgg16_bytes, monkeypatch, prefix="deadbeef")
    with pytest.raises(WeightsError) as excinfo:
        weights.load_weights("vgg16")
    one_line_error(excinfo, path.name, "does not start with deadbeef", "painterly weights download vgg16", "delete it")
    assert not (hub_dir / (path.name + ".sha256.json")).exists()


def test_truncated_cache_file_is_refused_before_loading(
    hub_dir: Path, vgg16_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = put_in_hub(hub_dir, vgg16_bytes, monkeypatch)
    weights.load_weights("vgg16")  # records it
    with path.open("r+b") as fh:
        fh.truncate(len(vgg16_bytes) - 1000)

    def no_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch read a file the record already refuses")

    monkeypatch.setattr(weights.torch, "load", no_load)
    with pytest.raises(WeightsError) as excinfo:
        weights.load_weights("vgg16")
    one_line_error(excinfo, path.name, f"has {len(vgg16_bytes) - 1000} bytes", "painterly weights download vgg16")
    assert weights.cache_status("vgg16").state == "changed"


def test_altered_file_is_caught_cheaply_by_time_and_fully_by_verify(
    hub_dir: Path, vgg16_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = put_in_hub(hub_dir, vgg16_bytes, monkeypatch)
    weights.load_weights("vgg16")
    recorded = path.stat()
    altered = bytearray(vgg16_bytes)
    altered[-100] ^= 0xFF  # same size, one byte of the zip's tail
    path.write_bytes(bytes(altered))
    with pytest.raises(WeightsError) as excinfo:  # the new mtime gives it away
        weights.load_weights("vgg16")
    one_line_error(excinfo, "was modified after painterly recorded its SHA-256", "painterly weights download")
    os.utime(path, ns=(recorded.st_atime_ns, recorded.st_mtime_ns))  # same size and time: only a hash can tell
    assert weights.cache_status("vgg16").state == "verified"
    with pytest.raises(WeightsError) as excinfo:
        weights.verify_weights("vgg16")
    one_line_error(excinfo, "altered or damaged", "painterly weights download vgg16")


def test_a_touched_file_with_the_same_bytes_passes_verify_and_is_re_recorded(
    hub_dir: Path, vgg16_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = put_in_hub(hub_dir, vgg16_bytes, monkeypatch)
    weights.load_weights("vgg16")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # a plain `cp` or `touch`
    with pytest.raises(WeightsError):
        weights.load_weights("vgg16")
    assert weights.verify_weights("vgg16") == hashlib.sha256(vgg16_bytes).hexdigest()
    assert weights.cache_status("vgg16").state == "verified"
    weights.load_weights("vgg16")


def test_read_only_cache_without_a_record_still_loads(
    hub_dir: Path, vgg16_full, vgg16_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A container image with weights baked in by hand: hashed on every load, but usable."""
    put_in_hub(hub_dir, vgg16_bytes, monkeypatch)

    def read_only(path: Path, sha256: str) -> None:
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(weights.checksums, "write_record", read_only)
    notes: list[str] = []
    assert_same_features(weights.load_weights("vgg16", log=notes.append), vgg16_full)
    assert any("cannot record" in note for note in notes)


def test_corrupt_hub_cache_says_how_to_recover(hub_dir: Path) -> None:
    hub_dir.mkdir(parents=True)
    (hub_dir / "vgg19-dcbb9e9d.pth").write_bytes(b"<html>gateway timeout</html>")
    with pytest.raises(WeightsError) as excinfo:
        weights.load_weights("vgg19")
    one_line_error(excinfo, "vgg19-dcbb9e9d.pth", "delete it")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server in a thread: (base URL, folder it serves)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", root
    httpd.shutdown()
    httpd.server_close()


def serve_as_vgg16(monkeypatch: pytest.MonkeyPatch, url: str, filename: str) -> None:
    info = dataclasses.replace(weights.MODELS["vgg16"], url=url, filename=filename)
    monkeypatch.setitem(weights.MODELS, "vgg16", info)


def test_download_checks_hash_and_caches(
    server: tuple[str, Path],
    hub_dir: Path,
    vgg16_full: dict[str, torch.Tensor],
    vgg16_bytes: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base, root = server
    name = f"vgg16-{hashlib.sha256(vgg16_bytes).hexdigest()[:8]}.pth"
    (root / name).write_bytes(vgg16_bytes)
    serve_as_vgg16(monkeypatch, base + name, name)
    notes: list[str] = []
    assert_same_features(weights.load_weights("vgg16", progress=False, log=notes.append), vgg16_full)
    assert sorted(p.name for p in hub_dir.iterdir()) == [name, name + ".sha256.json"]  # no temporary file left
    assert (hub_dir / name).read_bytes() == vgg16_bytes
    record = json.loads((hub_dir / (name + ".sha256.json")).read_text())
    assert record["sha256"] == hashlib.sha256(vgg16_bytes).hexdigest()  # the full hash, not just the prefix
    assert record["size"] == len(vgg16_bytes) and record["mtime_ns"] == (hub_dir / name).stat().st_mtime_ns
    assert any("downloading" in note for note in notes)


def test_download_with_wrong_hash_is_refused(
    server: tuple[str, Path], hub_dir: Path, vgg16_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, root = server
    assert not hashlib.sha256(vgg16_bytes).hexdigest().startswith("deadbeef")
    (root / "vgg16-deadbeef.pth").write_bytes(vgg16_bytes)
    serve_as_vgg16(monkeypatch, base + "vgg16-deadbeef.pth", "vgg16-deadbeef.pth")
    with pytest.raises(WeightsError) as excinfo:
        weights.load_weights("vgg16", progress=False)
    one_line_error(excinfo, "deadbeef", "nothing was saved")
    assert list(hub_dir.iterdir()) == []


def test_http_error_is_one_line(server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    base, _ = server
    serve_as_vgg16(monkeypatch, base + "gone.pth", "vgg16-397923af.pth")
    with pytest.raises(WeightsError) as excinfo:
        weights.load_weights("vgg16", progress=False)
    one_line_error(excinfo, "404", "vgg16-397923af.pth")


def test_unreachable_server_says_what_to_do(hub_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    serve_as_vgg16(monkeypatch, f"http://127.0.0.1:{port}/vgg16-397923af.pth", "vgg16-397923af.pth")
    with pytest.raises(WeightsError) as excinfo:
        weights.load_weights("vgg16", progress=False)
    one_line_error(excinfo, "download failed", "vgg16-397923af.pth", str(hub_dir), "--weights", "vgg16-hed")
    assert not hub_dir.exists() or list(hub_dir.iterdir()) == []


def test_cache_dir_follows_painterly_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert weights.cache_dir() == tmp_path / "painterly"
    monkeypatch.delenv("PAINTERLY_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights.cache_dir() == tmp_path / "xdg" / "painterly"


# --- ahead of time: fetch_weights and `painterly weights` ------------------------------------------


def test_fetch_downloads_once_then_only_verifies(
    server: tuple[str, Path], hub_dir: Path, vgg16_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, root = server
    name = f"vgg16-{hashlib.sha256(vgg16_bytes).hexdigest()[:8]}.pth"
    (root / name).write_bytes(vgg16_bytes)
    serve_as_vgg16(monkeypatch, base + name, name)
    assert weights.fetch_weights("vgg16", progress=False) == hub_dir / name
    assert weights.cache_status("vgg16").state == "verified"
    monkeypatch.setattr(weights.urllib.request, "urlopen", no_network)
    notes: list[str] = []
    weights.fetch_weights("vgg16", progress=False, log=notes.append)
    assert any("already there and verified" in note for note in notes)


def test_fetch_replaces_a_damaged_file(
    server: tuple[str, Path], hub_dir: Path, vgg16_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, root = server
    name = f"vgg16-{hashlib.sha256(vgg16_bytes).hexdigest()[:8]}.pth"
    (root / name).write_bytes(vgg16_bytes)
    serve_as_vgg16(monkeypatch, base + name, name)
    hub_dir.mkdir(parents=True)
    (hub_dir / name).write_bytes(vgg16_bytes[:5000])  # an interrupted copy by hand
    weights.fetch_weights("vgg16", progress=False)
    assert (hub_dir / name).read_bytes() == vgg16_bytes
    assert weights.cache_status("vgg16").state == "verified"


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from painterly.cli import main

    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_weights_cli_list_download_verify(
    server: tuple[str, Path], hub_dir: Path, vgg16_bytes: bytes, monkeypatch, capsys
) -> None:
    base, root = server
    name = f"vgg16-{hashlib.sha256(vgg16_bytes).hexdigest()[:8]}.pth"
    (root / name).write_bytes(vgg16_bytes)
    serve_as_vgg16(monkeypatch, base + name, name)

    code, out, _ = run_cli(["weights", "list"], capsys)
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == ["vgg19", "vgg16", "vgg16-hed"]
    assert "not downloaded" in out and str(hub_dir / name) in out

    code, out, _ = run_cli(["weights", "download", "vgg16", "--quiet"], capsys)
    assert code == 0 and hashlib.sha256(vgg16_bytes).hexdigest() in out
    code, out, _ = run_cli(["weights", "list", "vgg16"], capsys)
    assert code == 0 and "unchanged since hashed" in out and len(out.splitlines()) == 1

    code, out, _ = run_cli(["weights", "verify"], capsys)
    assert code == 0 and "vgg16: ok" in out and "vgg19: not downloaded" in out

    path = hub_dir / name
    stat = path.stat()
    path.write_bytes(vgg16_bytes[:-1] + bytes([vgg16_bytes[-1] ^ 1]))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    code, out, err = run_cli(["weights", "verify", "vgg16"], capsys)
    assert code == 1 and "altered or damaged" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["weights"], "required"),
        (["weights", "fetch"], "invalid choice"),
        (["weights", "download", "alexnet"], "invalid choice"),
        (["weights", "list", "--bogus"], "unrecognized arguments"),
    ],
)
def test_weights_cli_usage_errors_are_one_line(argv: list[str], needle: str, capsys) -> None:
    code, out, err = run_cli(argv, capsys)
    assert code == 2 and out == "" and needle in err and len(err.strip().splitlines()) == 1


def test_version_is_printed(capsys) -> None:
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and re.fullmatch(r"painterly \S+\n", out)
