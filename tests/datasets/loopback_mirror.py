"""A loopback HTTP mirror for download tests, and fabricated archives in each source's real layout.

:class:`LoopbackMirror` serves a folder over ``http://127.0.0.1:<port>/`` with HTTP ``Range``
support (what a real file server does), logs every request, and can answer a path with an
error status or cut its body after some bytes. :func:`publish` writes a dataset's files under
``<mirror folder>/<dataset folder>/<file name>`` (the layout ``--mirror`` reads), packing the
miniature trees of ``tests/utils/fabricate.py`` the way the real archives are packed.
"""
from __future__ import annotations

import os
import shutil
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from tests.utils import fabricate


class LoopbackMirror:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.log: List[Tuple[str, str, Optional[str]]] = []  # (method, path, Range header)
        self.fail: Dict[str, int] = {}  # path -> status answered instead of the file
        self.cut_after: Dict[str, int] = {}  # path -> bytes sent before the connection drops (once)
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                self._serve(body=True)

            def _serve(self, body: bool) -> None:
                path = self.path.split("?")[0]
                mirror.log.append((self.command, path, self.headers.get("Range")))
                if path in mirror.fail:
                    self.send_error(mirror.fail[path])
                    return
                file = mirror.directory / path.lstrip("/")
                if not file.is_file():
                    self.send_error(404)
                    return
                data = file.read_bytes()
                start = 0
                range_header = self.headers.get("Range")
                if range_header and range_header.startswith("bytes="):
                    start = int(range_header[6:].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if not body:
                    return
                payload = data[start:]
                cut = mirror.cut_after.pop(path, None) if self.command == "GET" else None
                if cut is not None:
                    self.wfile.write(payload[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def gets(self, suffix: str = "") -> List[Tuple[str, Optional[str]]]:
        """``(path, Range)`` of the GET requests whose path ends with ``suffix``."""
        return [(p, r) for m, p, r in self.log if m == "GET" and p.endswith(suffix)]

    def __enter__(self) -> "LoopbackMirror":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- packing
def _tar(path: Path, members: Dict[str, Path], mode: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode) as tar:
        for arcname, source in members.items():
            tar.add(str(source), arcname=arcname)


def _zip(path: Path, members: Dict[str, Path]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for arcname, source in members.items():
            if source.is_dir():
                for file in sorted(source.rglob("*")):
                    if file.is_file():
                        archive.write(file, f"{arcname}/{file.relative_to(source).as_posix()}")
            else:
                archive.write(source, arcname)


def _touch(path: Path, text: str = "x\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


# What each real source ships, written from the archives themselves (not from tools/data):
# config -> (fabricator kwargs, builder(tree, out)) where ``tree`` is the fabricated dataset
# folder and ``out`` the mirror's folder for the dataset.
def _eurosat(tree: Path, out: Path) -> None:
    _zip(out / "EuroSAT.zip", {"2750": tree / "2750"})


def _dtd(tree: Path, out: Path) -> None:
    _tar(out / "dtd-r1.0.1.tar.gz", {"dtd/images": tree / "images",
                                     "dtd/imdb/imdb.mat": _touch(tree / "_extra" / "imdb.mat"),
                                     "dtd/labels/labels_joint_anno.txt": _touch(tree / "_extra" / "labels.txt")}, "w:gz")


def _caltech101(tree: Path, out: Path) -> None:
    inner = tree / "_extra" / "101_ObjectCategories.tar.gz"
    _tar(inner, {"101_ObjectCategories": tree / "101_ObjectCategories"}, "w:gz")
    _zip(out / "caltech-101.zip", {"caltech-101/101_ObjectCategories.tar.gz": inner,
                                   "caltech-101/show_annotation.m": _touch(tree / "_extra" / "show_annotation.m")})


def _oxford_pets(tree: Path, out: Path) -> None:
    _tar(out / "images.tar.gz", {"images": tree / "images"}, "w:gz")
    _tar(out / "annotations.tar.gz", {"annotations": tree / "annotations"}, "w:gz")


def _oxford_flowers(tree: Path, out: Path) -> None:
    _tar(out / "102flowers.tgz", {"jpg": tree / "jpg"}, "w:gz")
    _copy(tree / "imagelabels.mat", out / "imagelabels.mat")
    _copy(tree / "cat_to_name.json", out / "cat_to_name.json")


def _food101(tree: Path, out: Path) -> None:
    _tar(out / "food-101.tar.gz", {"food-101/images": tree / "images",
                                   "food-101/meta/classes.txt": _touch(tree / "_extra" / "classes.txt")}, "w:gz")


def _fgvc_aircraft(tree: Path, out: Path) -> None:
    members = {f"fgvc-aircraft-2013b/data/{p.name}": p for p in sorted(tree.iterdir())}
    members["fgvc-aircraft-2013b/README.html"] = _touch(tree.parent / "_fgvc_readme.html")
    _tar(out / "fgvc-aircraft-2013b.tar.gz", members, "w:gz")


def _sun397(tree: Path, out: Path) -> None:
    _tar(out / "SUN397.tar.gz", {"SUN397": tree / "SUN397"}, "w:gz")
    _zip(out / "Partitions.zip", {n: tree / n for n in ("ClassName.txt", "Training_01.txt", "Testing_01.txt")})


def _ucf101(tree: Path, out: Path) -> None:
    _zip(out / "UCF-101-midframes.zip", {"UCF-101-midframes": tree / "UCF-101-midframes"})


def _stanford_cars(tree: Path, out: Path) -> None:
    _tar(out / "cars_train.tgz", {"cars_train": tree / "cars_train"}, "w:gz")
    _tar(out / "cars_test.tgz", {"cars_test": tree / "cars_test"}, "w:gz")
    _tar(out / "car_devkit.tgz", {"devkit": tree / "devkit"}, "w:gz")
    _copy(tree / "cars_test_annos_withlabels.mat", out / "cars_test_annos_withlabels.mat")


def _imagenet_a(tree: Path, out: Path) -> None:
    _tar(out / "imagenet-a.tar", {"imagenet-a": tree / "imagenet-a"}, "w")


def _imagenet_r(tree: Path, out: Path) -> None:
    _tar(out / "imagenet-r.tar", {"imagenet-r": tree / "imagenet-r"}, "w")


def _imagenetv2(tree: Path, out: Path) -> None:
    name = "imagenetv2-matched-frequency-format-val"
    _tar(out / "imagenetv2-matched-frequency.tar.gz", {name: tree / name}, "w:gz")


def _imagenet_sketch(tree: Path, out: Path) -> None:
    _zip(out / "ImageNet-Sketch.zip", {"sketch": tree / "images"})


PUBLISHERS = {
    "eurosat": ("eurosat", _eurosat),
    "dtd": ("dtd", _dtd),
    "caltech101": ("caltech-101", _caltech101),
    "oxford_pets": ("oxford_pets", _oxford_pets),
    "oxford_flowers": ("oxford_flowers", _oxford_flowers),
    "food101": ("food-101", _food101),
    "fgvc_aircraft": ("fgvc_aircraft", _fgvc_aircraft),
    "sun397": ("sun397", _sun397),
    "ucf101": ("ucf101", _ucf101),
    "stanford_cars": ("stanford_cars", _stanford_cars),
    "imagenet_a": ("imagenet-adversarial", _imagenet_a),
    "imagenet_r": ("imagenet-rendition", _imagenet_r),
    "imagenetv2": ("imagenetv2", _imagenetv2),
    "imagenet_sketch": ("imagenet-sketch", _imagenet_sketch),
}


def publish(config: str, mirror_dir: Path, work_dir: Path) -> Path:
    """Fabricate ``config``'s tree under ``work_dir`` and publish its files into ``mirror_dir``.

    Returns the fabricated dataset folder (the layout the download must reproduce). Split
    files are published as plain files, as Google Drive serves them.
    """
    folder, build = PUBLISHERS[config]
    source_root = work_dir / f"fabricated-{config}"
    fabricate.FABRICATORS[config](source_root)
    tree = source_root / folder
    out = mirror_dir / folder
    out.mkdir(parents=True, exist_ok=True)
    for split in tree.glob("split_zhou_*.json"):
        _copy(split, out / split.name)
    build(tree, out)
    return tree


def truncated_copy(src: Path, dst: Path, n_bytes: int) -> None:
    """The first ``n_bytes`` of ``src`` at ``dst``: what a killed download leaves."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as f:
        dst.write_bytes(f.read(n_bytes))


def publish_imagenet(out: Path, work_dir: Path, n_classes: int = 3, n_train: int = 2, n_val: int = 2) -> Dict[str, str]:
    """ILSVRC-2012's three archives for ``n_classes`` wnids, packed as image-net.org packs them:
    a train tar of per-class tars, a flat val tar, and the devkit (``data/meta.mat`` synsets
    and ``data/ILSVRC2012_validation_ground_truth.txt``). Returns ``{file name: md5}``."""
    import hashlib

    import numpy as np
    from scipy.io import savemat

    wnids = fabricate.imagenet_wnids()[:n_classes]
    stage = work_dir / "ilsvrc"
    class_tars = {}
    for label, wnid in enumerate(wnids):
        folder = stage / "train" / wnid
        for i in range(n_train):
            fabricate.write_image(folder / f"{wnid}_{i}.JPEG", label, i)
        class_tars[f"{wnid}.tar"] = stage / f"{wnid}.tar"
        _tar(stage / f"{wnid}.tar", {p.name: p for p in sorted(folder.iterdir())}, "w")
    _tar(out / "ILSVRC2012_img_train.tar", class_tars, "w")
    val_members, truth = {}, []
    for n in range(n_classes * n_val):  # interleaved classes, as in the real val set
        label = n % n_classes
        name = f"ILSVRC2012_val_{n + 1:08d}.JPEG"
        fabricate.write_image(stage / "val" / name, label, n)
        val_members[name] = stage / "val" / name
        truth.append(str(label + 1))  # ILSVRC2012_ID of the class
    _tar(out / "ILSVRC2012_img_val.tar", val_members, "w")
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images"]
    synsets = np.zeros((n_classes,), dtype=[(f, "O") for f in fields])
    for i, wnid in enumerate(wnids):
        synsets[i] = (i + 1, wnid, f"class {i}", "a gloss", 0, np.zeros((0,)), 0, n_train)
    devkit = stage / "ILSVRC2012_devkit_t12" / "data"
    devkit.mkdir(parents=True)
    savemat(str(devkit / "meta.mat"), {"synsets": synsets})
    (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text("\n".join(truth) + "\n")
    _tar(out / "ILSVRC2012_devkit_t12.tar.gz", {"ILSVRC2012_devkit_t12": stage / "ILSVRC2012_devkit_t12"}, "w:gz")
    return {name: hashlib.md5((out / name).read_bytes()).hexdigest()
            for name in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz")}
