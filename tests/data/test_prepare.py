"""lsr-data: every set prepared from a local mirror (tiny archives laid out like the real ones, served from
127.0.0.1 by a server that answers HTTP Range requests), resume after a kill, refused corrupt archives, from=DIR,
verify=true, one-line errors, and the presets reading the prepared folders. No real URL is contacted: every run
gives mirror=http://127.0.0.1:PORT (or from=DIR) and a manifest whose published checksums are the tiny archives'."""

from __future__ import annotations

import copy
import errno
import hashlib
import io
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf
from PIL import Image

from lightning_sr.data import prepare as P
from lightning_sr.data.degradation import gaussian_bd
from lightning_sr.ops.image_io import read_rgb
from tests.conftest import ROOT, SET5, SHARED, SMOKE, compose, run_cli, run_task_in_process

NAMES = list(P.manifest())


# ----- tiny archives laid out like the real ones ---------------------------------------------------------------
def _png(side: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _cifar_batch(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return pickle.dumps({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": [i % 10 for i in range(n)],
                         b"batch_label": b"x"}, protocol=2)


def _members(src: str, dst: str, seed: int) -> dict[str, bytes]:
    """Files of one extracted folder, named and nested as in the real archive."""
    if src.endswith("cifar-10-batches-py"):
        return {f"{src}/{b}": _cifar_batch(20, seed + i)
                for i, b in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"])}
    if "sharp" in src or dst in ("calendar", "city", "foliage", "walk"):  # video: <clip>/<frame>.png
        clips = ("000", "001") if "sharp" in src else ("",)
        return {f"{src}/{c}/{f:08d}.png".replace("//", "/"): _png(24, seed + 7 * f) for c in clips for f in range(5)}
    if "LR_bicubic/X" in src:
        s = int(src[-1])
        return {f"{src}/{i:04d}x{s}.png": _png(64 // s, seed + i) for i in (1, 2)}
    if src == "Flickr2K":  # Flickr2K/Flickr2K_HR/000001.png, Flickr2K/Flickr2K_LR_bicubic/X4/000001x4.png
        return {f"{src}/Flickr2K_HR/{i:06d}.png": _png(64, seed + i) for i in (1, 2)} | \
            {f"{src}/Flickr2K_LR_bicubic/X4/{i:06d}x4.png": _png(16, seed + i) for i in (1, 2)}
    if src.startswith("benchmark/"):
        return {f"{src}/HR/img{i}.png": _png(24, seed + i) for i in (1, 2)}
    return {f"{src}/img{i:03d}.png": _png(64, seed + i) for i in (1, 2, 3)}


def _archive(file: str, members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    if file.endswith(".zip"):
        with zipfile.ZipFile(buf, "w") as z:
            for name, data in members.items():
                z.writestr(name, data)
    else:
        with tarfile.open(fileobj=buf, mode="w:gz" if file.endswith(".gz") else "w") as t:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def mirror_files() -> dict[str, bytes]:
    """One tiny archive per file of the real manifest (a file shared by several sets holds all their folders)."""
    wanted: dict[str, dict[str, str]] = {}
    for e in P.manifest().values():
        for a in e["archives"]:
            wanted.setdefault(a["file"], {}).update(a["extract"])
    files = {}
    for k, (file, extract) in enumerate(sorted(wanted.items())):
        members: dict[str, bytes] = {}
        for i, (src, dst) in enumerate(sorted(extract.items())):
            members.update(_members(src, dst, 100 * k + 10 * i))
        files[file] = _archive(file, members)
    return files


def _test_manifest(path: Path, files: dict[str, bytes]) -> Path:
    """The real manifest, with the tiny archives' digests in place of the published ones (same layout, same URLs)."""
    m = copy.deepcopy(P.manifest())
    for e in m.values():
        for a in e["archives"]:
            for algo in ("md5", "sha256"):
                if a.get(algo):
                    a[algo] = hashlib.new(algo, files[a["file"]]).hexdigest()
    path.write_text(yaml.safe_dump(m))
    return path


@pytest.fixture
def manifest_env(tmp_path, mirror_files, monkeypatch):
    path = _test_manifest(tmp_path / "manifest.yaml", mirror_files)
    monkeypatch.setenv("LSR_DATA_MANIFEST", str(path))
    return path


# ----- a local HTTP server with Range support --------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        srv = self.server
        name = self.path.lstrip("/")
        srv.requests.append((name, self.headers.get("Range")))
        data = srv.files.get(name)
        if data is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        stall = srv.stall_after.get(name)
        if stall is not None and start < stall:  # send part of the file, then hang (the client gets killed)
            self.wfile.write(data[start:stall])
            self.wfile.flush()
            srv.release.wait(20)
            return
        self.wfile.write(data[start:])


@pytest.fixture
def server(mirror_files):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.files, srv.requests, srv.stall_after, srv.release = dict(mirror_files), [], {}, threading.Event()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()


def _cli(args: list[str], env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    e = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    p = subprocess.run([sys.executable, "-m", "lightning_sr.data.prepare", *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=120, env=e)
    if check and p.returncode != 0:
        raise AssertionError(f"lsr-data {args} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def _error_line(p: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and lines and lines[-1].startswith("error: "), p.stderr
    assert "Traceback" not in p.stderr, p.stderr
    return lines[-1]


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".lsr-tmp") or p.name.endswith(".part")]


# ----- every set, from the local mirror --------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_every_set_prepares_from_a_local_mirror(name, tmp_path, server, manifest_env):
    root = tmp_path / "data"
    rec = P.prepare(name, root, mirror=server.url, progress=False)
    e = P.manifest()[name]
    for p in e["expect"]:
        assert (root / p).exists(), p
    assert set(rec["targets"]) == {d for a in e["archives"] for d in a["extract"].values()}
    assert all(req[0] in server.files for req in server.requests)  # only the mirror was asked
    assert not _leftovers(root) and not list((root / ".lsr_data" / "downloads").iterdir())  # downloads removed
    for a in e["archives"]:
        assert rec["archives"][a["file"]]["sha256"] == hashlib.sha256(server.files[a["file"]]).hexdigest()
    assert P.verify(name, root)["files"] == sum(len(f) for f in rec["targets"].values()) > 0
    if name == "reds":  # BD LR beside every clip's frames, made by the project's OpenCV-exact degradation
        for split in ("train_sharp", "val_sharp"):
            frame = root / split / "000" / "00000003.png"
            lr = read_rgb(root / split / "000" / "LR_BD_x4" / "00000003.png")
            hr = torch.from_numpy(read_rgb(frame)).permute(2, 0, 1).float()
            assert np.array_equal(lr, gaussian_bd(hr, 4, 1.5).to(torch.uint8).permute(1, 2, 0).numpy())
    # a second run finds everything in place and fetches nothing
    n = len(server.requests)
    P.prepare(name, root, mirror=server.url, progress=False)
    assert len(server.requests) == n


def test_presets_read_the_prepared_folders(tmp_path, server, manifest_env, monkeypatch):
    """CLI run (python -m lightning_sr.data.prepare), then the real datamodules of data=t91, data=benchmark and
    data=cifar10 with data.root=DIR and nothing else."""
    from lightning_sr.data.classify import ClassifyDataModule
    from lightning_sr.data.datamodule import SRDataModule

    monkeypatch.setenv("LSR_CACHE", str(tmp_path / "cache"))
    roots = {n: tmp_path / n for n in ("t91", "benchmark", "cifar10")}
    for n, r in roots.items():
        p = _cli([n, f"root={r}", "--mirror", server.url, "progress=false"])
        assert f"prepared {n}" in p.stdout
    cfg = compose(["data=t91", f"data.root={roots['t91']}"])
    dm = SRDataModule(cfg.data, 4)
    dm.setup("fit")
    assert len(dm.train_set.pairs) == 3 and [s.name for s in dm.eval_sets] == ["Set5"]
    cfg = compose(["data=benchmark", f"data.root={roots['benchmark']}"])
    dm = SRDataModule(cfg.data, 4)
    dm.setup("test")
    assert [s.name for s in dm.eval_sets] == ["Set5", "Set14", "BSD100", "Urban100"]
    cfg = compose(["data=cifar10", f"data.root={roots['cifar10']}", "data.num_workers=0"])
    dm = ClassifyDataModule(cfg.data)
    dm.setup("fit")
    assert dm.num_classes == 10 and [len(d) for d in dm.eval_sets] == [20]  # test_batch: 20 images


# ----- resume, corruption, from=DIR, verify ----------------------------------------------------------------------
def test_killed_download_resumes_with_a_range_request(tmp_path, server, manifest_env):
    big = bytes(np.random.default_rng(0).integers(0, 256, 400_000, dtype=np.uint8))
    file = "cifar-10-python.tar.gz"
    data = _archive(file, {**{m: d for m, d in _members("cifar-10-batches-py", "", 1).items()}, "pad.bin": big})
    server.files[file] = data
    _test_manifest(manifest_env, server.files)
    server.stall_after[file] = 150_000
    root = tmp_path / "cifar"
    e = {**os.environ, "PYTHONPATH": str(ROOT), "LSR_DATA_MANIFEST": str(manifest_env)}
    proc = subprocess.Popen([sys.executable, "-m", "lightning_sr.data.prepare", "cifar10", f"root={root}",
                             f"mirror={server.url}", "progress=false"], cwd=ROOT, env=e,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    part = root / ".lsr_data" / "downloads" / f"{file}.part"
    deadline = time.time() + 60
    while time.time() < deadline and not (part.exists() and part.stat().st_size >= 150_000):
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert part.stat().st_size == 150_000
    assert not (root / "cifar-10-batches-py").exists()  # a half-written archive is never extracted
    server.stall_after.clear()
    server.requests.clear()
    _cli(["cifar10", f"root={root}", f"mirror={server.url}", "progress=false"], env={"LSR_DATA_MANIFEST": str(manifest_env)})
    assert server.requests == [(file, "bytes=150000-")]
    rec = json.loads((root / ".lsr_data" / "cifar10.json").read_text())
    assert rec["archives"][file]["sha256"] == hashlib.sha256(data).hexdigest()  # byte-identical after the resume
    assert (root / "cifar-10-batches-py" / "test_batch").is_file() and not _leftovers(root)


def test_corrupted_archive_is_refused(tmp_path, server, manifest_env):
    file = "cifar-10-python.tar.gz"
    good = server.files[file]
    server.files[file] = good[:-10] + bytes(10)  # same size, other bytes: the published md5 differs
    root = tmp_path / "cifar"
    line = _error_line(_cli(["cifar10", f"root={root}", f"--mirror={server.url}", "progress=false"], check=False))
    assert f"{server.url}/{file}" in line and "md5" in line and "does not match" in line
    assert not (root / "cifar-10-batches-py").exists() and not _leftovers(root)
    assert not (root / ".lsr_data" / "downloads" / file).exists()


def test_from_dir_uses_local_archives(tmp_path, mirror_files, manifest_env):
    src = tmp_path / "fetched"
    src.mkdir()
    (src / "benchmark.tar").write_bytes(mirror_files["benchmark.tar"])
    root = tmp_path / "bench"
    dead = f"http://127.0.0.1:{_free_port()}"  # nothing listens: from=DIR must not need the network
    _cli(["benchmark", "--root", str(root), "--from", str(src), "--mirror", dead, "progress=false"])
    assert (root / "Urban100" / "HR" / "img1.png").is_file()
    assert (src / "benchmark.tar").read_bytes() == mirror_files["benchmark.tar"]  # the user's file is untouched
    line = _error_line(_cli(["cifar10", f"root={tmp_path / 'c'}", f"from={src}"], check=False))
    assert str(src / "cifar-10-python.tar.gz") in line and "https://www.cs.toronto.edu" in line


def test_verify_catches_a_changed_file(tmp_path, server, manifest_env):
    root = tmp_path / "v"
    _cli(["vid4", f"root={root}", f"mirror={server.url}", "progress=false"])
    assert "verified vid4" in _cli(["vid4", f"root={root}", "--verify"]).stdout
    frame = root / "city" / "00000002.png"
    frame.write_bytes(frame.read_bytes()[:-1] + b"\0")
    line = _error_line(_cli(["vid4", f"root={root}", "--verify"], check=False))
    assert str(frame) in line and "changed" in line


# ----- bad input: one line each, nothing outside root, nothing half-extracted ------------------------------------
def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_no_network_404_and_occupied_folder_are_one_line(tmp_path, server, manifest_env):
    dead = f"http://127.0.0.1:{_free_port()}"
    line = _error_line(_cli(["set5", f"root={tmp_path / 'a'}", f"mirror={dead}"], check=False))
    assert f"{dead}/benchmark.tar" in line and "from=DIR" in line
    del server.files["vid4_HR.zip"]
    line = _error_line(_cli(["vid4", f"root={tmp_path / 'b'}", f"mirror={server.url}"], check=False))
    assert f"{server.url}/vid4_HR.zip" in line and "HTTP 404" in line
    root = tmp_path / "c"
    (root / "Set5").mkdir(parents=True)
    (root / "Set5" / "mine.txt").write_text("keep")
    server.requests.clear()
    line = _error_line(_cli(["set5", f"root={root}", f"mirror={server.url}"], check=False))
    assert str(root / "Set5") in line and "not prepared by lsr-data" in line
    assert server.requests == [] and sorted(p.name for p in root.rglob("*")) == ["Set5", "mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c", "manifest.yaml"]  # nothing else written


def test_disk_full_is_one_line_and_leaves_nothing_half_extracted(tmp_path, server, manifest_env, monkeypatch):
    real = P._extract

    def extract_then_full(archive, into):  # the disk fills up during extraction (after real files were written)
        real(archive, into)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(P, "_extract", extract_then_full)
    root = tmp_path / "full"
    with pytest.raises(P.DataError, match="disk full while preparing set14 under") as e:
        P.prepare("set14", root, mirror=server.url, progress=False)
    assert "\n" not in str(e.value)
    assert not (root / "Set14").exists() and not _leftovers(root)


def test_unknown_set_and_usage(manifest_env):
    line = _error_line(_cli(["imagenet"], check=False))
    assert "unknown data set 'imagenet'" in line and "div2k" in line
    out = _cli(["list"]).stdout
    assert all(n in out for n in NAMES)


# ----- data=t91 ----------------------------------------------------------------------------------------------------
def test_t91_missing_names_the_folder_and_the_command(tmp_path, capsys):
    code, err = run_task_in_process(SMOKE + ["data=t91", f"data.root={tmp_path / 'none'}"], tmp_path / "run", capsys)
    assert code == 2 and len(err) == 1
    assert str(tmp_path / "none" / "T91") in err[0] and "lsr-data t91" in err[0]


@pytest.mark.skipif(not ((SHARED / "data" / "T91").is_dir() and (SET5 / "HR").is_dir()),
                    reason="../shared/data/T91 and Set5 not present")
def test_t91_trains_on_t91_and_validates_on_set5(tmp_path):
    out = tmp_path / "run"
    p = run_cli("train.py", SMOKE + ["data=t91", "data.batch_size=4", "data.num_workers=0", "data.decode_threads=2",
                                     f"hydra.run.dir={out}"], timeout=300)
    log = p.stdout + p.stderr
    assert "train: 91 images from" in log and "T91" in log
    m = json.loads((out / "metrics.json").read_text())
    assert "Set5" in m["sets"] and m["sets"]["Set5"]["role"] == "val"
    cfg = OmegaConf.load(out / ".hydra" / "config.yaml")
    assert Path(cfg.data.root).resolve() == (SHARED / "data").resolve()


def test_a_failure_after_the_first_archive_resumes_keeping_what_was_placed(tmp_path, server, manifest_env):
    """DIV2K has several archives: a 404 on the second leaves the first archive's folders recorded, --verify says the
    set is incomplete, and the same command later fetches only what is missing."""
    arcs = P.entry("div2k")["archives"]
    assert len(arcs) >= 2
    second = arcs[1]["file"]
    saved = server.files.pop(second)
    root = tmp_path / "div2k"
    with pytest.raises(P.DataError, match=f"{second}"):
        P.prepare("div2k", root, mirror=server.url, progress=False)
    first_targets = list(arcs[0]["extract"].values())
    assert all((root / d).exists() for d in first_targets)
    with pytest.raises(P.DataError, match="was not prepared to the end"):
        P.verify("div2k", root)
    server.files[second] = saved
    server.requests.clear()
    P.prepare("div2k", root, mirror=server.url, progress=False)
    assert not any(arcs[0]["file"] in r for r in server.requests)  # the placed archive was not fetched again
    assert P.verify("div2k", root)["files"] > 0 and not _leftovers(root)
