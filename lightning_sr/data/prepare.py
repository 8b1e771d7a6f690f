"""Prepare a data set with one command: download, check, extract and place it where its ``data=`` preset reads it.

    lsr-data NAME [root=DIR] [from=DIR] [mirror=URL] [verify=true] [progress=true]
    python -m lightning_sr.data.prepare NAME ...      (the same; --from DIR, --mirror URL, --root DIR, --verify too)
    lsr-data list                                     (the sets, their presets and sources)

NAME: div2k, flickr2k, benchmark (Set5, Set14, BSD100, Urban100), set5, set14, bsd100, urban100, t91 (T91 + Set5),
general100, reds, vid4, cifar10. Where each comes from (URLs, mirrors, published checksums) and where its files go is
the manifest ``lightning_sr/data/manifest.yaml`` (listed in docs/data.md).

* ``root``: the folder to prepare (default ``$LSR_DATA/<dir>`` or ``./data/<dir>``, the preset's default
  ``data.root``); afterwards ``data=<preset> data.root=DIR`` works with nothing else. Nothing outside ``root`` is
  written: downloads go to ``<root>/.lsr_data/downloads/`` (``<file>.part`` while incomplete, resumed with an HTTP
  Range request), records to ``<root>/.lsr_data/<name>.json``.
* ``from=DIR``: archives fetched by hand (clusters without internet): ``DIR/<file>`` is checked and extracted, never
  modified. ``mirror=URL`` (or ``$LSR_DATA_MIRROR``): fetch every archive from ``URL/<file>`` instead of the listed
  URLs (a local copy of the archives; the tests serve theirs from 127.0.0.1).
* Every archive is checked before extraction: against its published md5/sha256 when there is one, else its sha256
  is recorded at the first download. Archives are extracted into ``<root>/.lsr-tmp-*`` and their folders renamed
  into place, so a failure leaves nothing half-extracted; the download is removed once its folders are placed.
* ``verify=true``: re-check a prepared folder against its record (size and sha256 of every file placed).

Bad input (no network, HTTP errors, a checksum mismatch, a full disk, a target folder that holds something else)
is one line naming the URL or file and what to do.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from lightning_sr.cli import parse_bool
from lightning_sr.data.degradation import gaussian_bd
from lightning_sr.data.frames import list_frames
from lightning_sr.errors import ConfigError, DataError, LightningSRError, require
from lightning_sr.fs import atomic_write, promote
from lightning_sr.ops.image_io import read_rgb, write_rgb

log = logging.getLogger(__name__)

MANIFEST = Path(__file__).with_name("manifest.yaml")  # $LSR_DATA_MANIFEST: another one (a local mirror's own)
STATE = ".lsr_data"
KEYS = ("root", "from", "mirror", "verify", "progress")
USAGE = ("usage: lsr-data NAME|list [root=DIR] [from=DIR] [mirror=URL] [verify=true] [progress=true] "
         "(also --root DIR, --from DIR, --mirror URL, --verify)")
CHUNK = 1 << 20
TIMEOUT = 30.0


def manifest() -> dict[str, dict[str, Any]]:
    with open(os.environ.get("LSR_DATA_MANIFEST") or MANIFEST) as f:
        return yaml.safe_load(f)


def entry(name: str) -> dict[str, Any]:
    sets = manifest()
    key = name.lower()
    require(key in sets, f"unknown data set {name!r}; use one of {', '.join(sets)}")
    return sets[key]


def default_root(name: str) -> Path:
    return Path(os.environ.get("LSR_DATA") or "data") / entry(name)["dir"]


# ----- checksums -----------------------------------------------------------------------------------------------
def file_digests(path: Path) -> dict[str, Any]:
    """md5 and sha256 of a file in one pass, and its size."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            md5.update(block)
            sha.update(block)
    return {"size": path.stat().st_size, "md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def check_archive(path: Path, arc: dict[str, Any], origin: str) -> dict[str, Any]:
    """Digests of ``path``; a DataError when its size or a published checksum differs (``origin``: the URL or file)."""
    d = file_digests(path)
    if arc.get("size") and d["size"] != int(arc["size"]):
        raise DataError(f"{origin}: {d['size']} bytes, expected {arc['size']}")
    for algo in ("sha256", "md5"):
        if arc.get(algo) and d[algo] != str(arc[algo]).lower():
            raise DataError(f"{origin}: {algo} {d[algo]} does not match the published {arc[algo]}")
    return d


# ----- download ----------------------------------------------------------------------------------------------
class _Unavailable(Exception):
    """This URL cannot give the file now (try the next mirror)."""


@contextmanager
def _progress(enabled: bool, total: int | None, what: str) -> Iterator[Callable[[int], None]]:
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)


def _fetch(url: str, part: Path, progress: bool) -> None:
    """Download ``url`` into ``part``, continuing an existing partial file with an HTTP Range request."""
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "lightning-sr (lsr-data)"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # nothing left to send: the partial file is complete
            return
        raise _Unavailable(f"HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise _Unavailable(str(getattr(e, "reason", e))) from None
    with resp:
        ctype = resp.headers.get("Content-Type", "")
        if ctype.startswith("text/html"):
            raise _Unavailable("answered with a web page, not the archive")
        resumed = resp.status == 206
        if start and not resumed:
            log.info("%s: the server does not resume (HTTP %s); downloading from the start", url, resp.status)
        length = resp.headers.get("Content-Length")
        total = (int(length) + (start if resumed else 0)) if length else None
        with open(part, "ab" if resumed else "wb") as f, _progress(progress, total, part.name[:-5]) as advance:
            if resumed:
                advance(start)
            while True:
                try:
                    block = resp.read1(CHUNK)  # what has arrived (read() would wait for a whole chunk)
                except OSError as e:  # connection lost mid-way: keep what arrived, the next run resumes
                    raise _Unavailable(f"connection lost after {f.tell()} bytes ({e})") from None
                if not block:
                    break
                f.write(block)
                advance(len(block))
        if total is not None and part.stat().st_size < total:
            raise _Unavailable(f"connection closed after {part.stat().st_size} of {total} bytes")


def download(arc: dict[str, Any], downloads: Path, mirror: str | None, progress: bool) -> tuple[Path, dict, str]:
    """Fetch one archive into ``downloads`` (resuming ``<file>.part``); check it; rename it into place."""
    dest = downloads / arc["file"]
    urls = [f"{mirror.rstrip('/')}/{arc['file']}"] if mirror else list(arc["urls"])
    if dest.is_file():  # a complete, renamed download from an earlier run (e.g. stopped during extraction)
        try:
            return dest, check_archive(dest, arc, str(dest)), urls[0]
        except DataError:
            dest.unlink()
    downloads.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    tried = []
    for url in urls:
        log.info("downloading %s", url)
        try:
            _fetch(url, part, progress)
        except _Unavailable as e:
            tried.append(f"{url} ({e})")
            continue
        try:
            digests = check_archive(part, arc, url)
        except DataError as e:
            part.unlink(missing_ok=True)
            raise DataError(f"{e}; the download was removed: run the command again, or fetch the file by hand and "
                            f"use from=DIR") from None
        promote(part, dest)
        return dest, digests, url
    keep = f" ({part.stat().st_size} bytes kept in {part}: the next run resumes)" if part.exists() else ""
    raise DataError(f"cannot download {arc['file']}: {'; '.join(tried)}{keep}; check the network and run again, or "
                    f"fetch it by hand and use from=DIR")


# ----- extraction and placement ------------------------------------------------------------------------------
def _extract(archive: Path, into: Path) -> None:
    name = archive.name.lower()
    if name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            for m in z.namelist():
                p = Path(m)
                if p.is_absolute() or ".." in p.parts:
                    raise DataError(f"{archive}: member {m!r} points outside the archive folder; refusing to extract")
            z.extractall(into)
    elif name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        with tarfile.open(archive) as t:
            t.extractall(into, filter="data")  # refuses absolute paths, "..", links out of the folder
    else:
        raise ConfigError(f"{archive}: unknown archive type (the manifest lists .zip and .tar files)")


def _tree(folder: Path) -> dict[str, list]:
    """{relative path: [size, sha256]} of every file under ``folder`` (or the file itself)."""
    files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
    base = folder.parent if folder.is_file() else folder
    out = {}
    for p in files:
        d = file_digests(p)
        out[p.relative_to(base).as_posix()] = [d["size"], d["sha256"]]
    return out


def _records(root: Path) -> dict[str, dict]:
    state = root / STATE
    out = {}
    for p in sorted(state.glob("*.json")) if state.is_dir() else []:
        try:
            out[p.stem] = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
    return out


def _placed(root: Path) -> dict[str, dict]:
    """Target folders that lsr-data placed under ``root``: {target: its file record}."""
    out: dict[str, dict] = {}
    for rec in _records(root).values():
        out.update(rec.get("targets", {}))
    return out


def make_reds_bd(extracted: Path, scale: int = 4, sigma: float = 1.5, progress: bool = True) -> None:
    """REDS BD LR frames: ``<clip>/LR_BD_x<scale>/<frame>.png`` beside every clip's frames, made with the project's
    OpenCV-exact BD degradation (:func:`lightning_sr.data.degradation.gaussian_bd`, the one data=reds uses)."""
    import torch

    clips = sorted(p for split in ("train_sharp", "val_sharp") if (extracted / split).is_dir()
                   for p in (extracted / split).iterdir() if p.is_dir())
    frames = [(c, f) for c in clips for f in list_frames(c, "REDS clip")]
    with _progress(progress, len(frames), f"REDS BD x{scale}") as advance:
        for clip, f in frames:
            hr = torch.from_numpy(read_rgb(f)).permute(2, 0, 1).float()
            h, w = hr.shape[-2] - hr.shape[-2] % scale, hr.shape[-1] - hr.shape[-1] % scale
            lr = gaussian_bd(hr[:, :h, :w], scale, sigma).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
            write_rgb(clip / f"LR_BD_x{scale}" / f"{f.stem}.png", lr)
            advance(1)


MAKERS: dict[str, Callable[..., None]] = {"reds_bd": make_reds_bd}


def prepare(name: str, root: str | Path | None = None, source: str | Path | None = None, mirror: str | None = None,
            progress: bool = True) -> dict[str, Any]:
    """Prepare data set ``name`` under ``root``; returns its record (also written to ``<root>/.lsr_data/<name>.json``)."""
    e = entry(name)
    name = name.lower()
    root = Path(root).expanduser() if root else default_root(name)
    src_dir = Path(source).expanduser() if source else None
    if src_dir is not None:
        require(src_dir.is_dir(), f"from={src_dir} is not a folder; give the folder that holds "
                                  f"{', '.join(a['file'] for a in e['archives'])}", DataError)
    if root.exists() and not root.is_dir():
        raise DataError(f"root={root} is a file, not a folder; give a folder (it may not exist yet)")
    placed = _placed(root)
    # refuse before fetching anything: a target folder that holds something lsr-data did not put there
    for arc in e["archives"]:
        for dst in arc["extract"].values():
            if (root / dst).exists() and dst not in placed:
                raise DataError(f"{root / dst} already exists and was not prepared by lsr-data; move it away, or give "
                                f"another root=DIR (nothing was changed)")
    state = root / STATE
    record: dict[str, Any] = {"name": name, "title": e["title"], "preset": e["preset"], "archives": {},
                              "targets": {}, "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    tmp = root / f".lsr-tmp-{name}-{os.getpid()}"
    try:
        for arc in e["archives"]:
            todo = {s: d for s, d in arc["extract"].items() if d not in placed}
            record["targets"].update({d: placed[d] for d in arc["extract"].values() if d in placed})
            if not todo:
                log.info("%s: already prepared under %s", ", ".join(arc["extract"].values()), root)
                continue
            if src_dir is not None:
                path = src_dir / arc["file"]
                if not path.is_file():
                    raise DataError(f"{path} does not exist; fetch {arc['file']} from {arc['urls'][0]} into {src_dir}")
                digests, origin = check_archive(path, arc, str(path)), str(path)
            else:
                path, digests, origin = download(arc, state / "downloads", mirror, progress)
            record["archives"][arc["file"]] = {"source": origin, **digests,
                                               "published": {k: arc.get(k) for k in ("md5", "sha256") if arc.get(k)}}
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            log.info("extracting %s", path.name)
            _extract(path, tmp)
            for src in todo:
                if not (tmp / src).exists():
                    raise DataError(f"{origin} holds no {src!r} (the manifest's layout for {arc['file']}); check that "
                                    f"this is the right archive")
            if e.get("make"):
                MAKERS[e["make"]](_common_parent(tmp, todo), progress=progress)
            for src, dst in todo.items():
                record["targets"][dst] = _tree(tmp / src)
            for src, dst in todo.items():
                (root / dst).parent.mkdir(parents=True, exist_ok=True)
                os.rename(tmp / src, root / dst)
                placed[dst] = record["targets"][dst]
            # the folders placed so far are recorded before the next archive: a failure later (network, disk) is
            # resumed by running the command again, which keeps them
            atomic_write(state / f"{name}.json", json.dumps({**record, "complete": False}, indent=1) + "\n")
            shutil.rmtree(tmp)
            if src_dir is None:
                path.unlink()
        missing = [p for p in e.get("expect", []) if not (root / p).exists()]
        if missing:
            raise DataError(f"after preparing {name}, {', '.join(str(root / p) for p in missing)} is missing; the "
                            f"archives do not match the manifest")
        record["complete"] = True
        atomic_write(state / f"{name}.json", json.dumps(record, indent=1) + "\n")
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise DataError(f"disk full while preparing {name} under {root}; free space there (or give another "
                            f"root=DIR) and run the command again: finished downloads and placed folders are kept") \
                from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return record


def _common_parent(tmp: Path, todo: dict[str, str]) -> Path:
    """The folder inside the extraction that holds the folders to place (what a ``make`` step works on)."""
    parents = {Path(s).parent for s in todo}
    return tmp / (parents.pop() if len(parents) == 1 else "")


def verify(name: str, root: str | Path | None = None) -> dict[str, Any]:
    """Re-check every file placed for ``name`` under ``root`` (size and sha256); a DataError names what changed."""
    name = name.lower()
    entry(name)
    root = Path(root).expanduser() if root else default_root(name)
    rec_path = root / STATE / f"{name}.json"
    if not rec_path.is_file():
        raise DataError(f"{root} has no record of {name} ({rec_path} is missing); prepare it with: lsr-data {name} "
                        f"root={root}")
    rec = json.loads(rec_path.read_text())
    require(rec.get("complete", True), f"{name} under {root} was not prepared to the end (an archive failed); run "
                                       f"lsr-data {name} root={root} again: the folders already placed are kept",
            DataError)
    bad, n = [], 0
    for dst, files in rec["targets"].items():
        base = (root / dst).parent if (root / dst).is_file() else root / dst
        for rel, (size, sha) in files.items():
            n += 1
            p = base / rel
            if not p.is_file():
                bad.append(f"{p} is missing")
            elif p.stat().st_size != size or file_digests(p)["sha256"] != sha:
                bad.append(f"{p} changed")
    if bad:
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise DataError(f"{name} under {root}: {'; '.join(bad[:3])}{more}; move the folders it placed away and run "
                        f"lsr-data {name} root={root} again")
    return {"name": name, "root": str(root), "files": n}


# ----- command line ------------------------------------------------------------------------------------------
def parse_args(argv: list[str]) -> tuple[str, dict[str, str]]:
    name, args, i = None, {}, 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help", "help"):
            raise SystemExit(f"{USAGE}\n{__doc__}")
        if a.startswith("--") and "=" not in a:
            key = a[2:]
            require(key in KEYS, f"unknown option {a!r}; {USAGE}")
            if key == "verify":
                args[key] = "true"
            else:
                require(i + 1 < len(argv), f"{a} needs a value; {USAGE}")
                args[key] = argv[i + 1]
                i += 1
        elif "=" in a:
            key, _, value = a.lstrip("-").partition("=")
            require(key in KEYS, f"unknown argument {a!r}; {USAGE}")
            args[key] = value
        else:
            require(name is None, f"one data set at a time ({name!r} and {a!r}); {USAGE}")
            name = a
        i += 1
    require(name is not None, f"give a data set name ({', '.join(manifest())}); {USAGE}")
    return name, args


def listing() -> str:
    lines = []
    for key, e in manifest().items():
        lines.append(f"{key:11s} {e['title']}\n            preset: {e['preset']}")
        for a in e["archives"]:
            checks = ", ".join(f"{k} {a[k]}" for k in ("md5", "sha256") if a.get(k)) or "no checksum published"
            lines.append(f"            {a['file']}: {' | '.join(a['urls'])} ({checks})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        name, a = parse_args(sys.argv[1:] if argv is None else argv)
        if name == "list":
            print(listing())
            return 0
        if parse_bool(a.get("verify", "false"), "verify"):
            res = verify(name, a.get("root") or None)
            print(f"verified {name}: {res['files']} files under {res['root']} match their record")
            return 0
        rec = prepare(name, a.get("root") or None, a.get("from") or None,
                      a.get("mirror") or os.environ.get("LSR_DATA_MIRROR") or None,
                      parse_bool(a.get("progress", "true"), "progress"))
    except LightningSRError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    root = a.get("root") or default_root(name)
    n = sum(len(f) for f in rec["targets"].values())
    print(f"prepared {name}: {n} files in {', '.join(sorted(rec['targets']))} under {root}; use: {rec['preset']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
