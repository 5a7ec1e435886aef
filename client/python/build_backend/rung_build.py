"""A PEP 517 build backend for rung's Python package, standard library only.

pip builds the package offline with it: there is no setuptools or wheel to fetch. It copies
rung/ into a wheel and adds rung/v1, generated from the repository's proto/ folder with protoc
(--python_out) and grpc_python_plugin, or taken from a rung/v1 already in the tree (an sdist).
"""

import base64
import hashlib
import os
import shutil
import subprocess
import tempfile
import zipfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTO = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))
NAME = "rung"


def _metadata():
    version = "0.0.0"
    deps = []
    with open(os.path.join(HERE, "pyproject.toml")) as f:
        for line in f:
            if line.startswith("version"):
                version = line.split("=", 1)[1].strip().strip('"')
            if line.startswith("dependencies"):
                deps = [d.strip().strip('"') for d in line.split("=", 1)[1].strip().strip("[]").split(",") if d.strip()]
    lines = ["Metadata-Version: 2.1", f"Name: {NAME}", f"Version: {version}",
             "Summary: rung's reporter and gRPC client", "Requires-Python: >=3.9"]
    lines += [f"Requires-Dist: {d}" for d in deps]
    return version, "\n".join(lines) + "\n"


def _generate(out):
    """Writes rung/v1/*_pb2.py and *_pb2_grpc.py under `out`."""
    tree = os.path.join(HERE, "rung", "v1")
    if not os.path.isdir(PROTO):
        if os.path.isdir(tree):  # built from an sdist that carries the generated code
            shutil.copytree(tree, os.path.join(out, "rung", "v1"))
            return
        raise RuntimeError(f"rung: {PROTO} not found; build from a rung checkout")
    protoc = shutil.which("protoc")
    plugin = shutil.which("grpc_python_plugin")
    if not protoc or not plugin:
        raise RuntimeError("rung: protoc and grpc_python_plugin are needed to build the client "
                           "(Debian: protobuf-compiler protobuf-compiler-grpc; deploy/install-deps.sh installs them)")
    protos = sorted(os.path.join("rung", "v1", f) for f in os.listdir(os.path.join(PROTO, "rung", "v1"))
                    if f.endswith(".proto"))
    subprocess.run([protoc, f"-I{PROTO}", f"--python_out={out}", f"--grpc_out={out}",
                    f"--plugin=protoc-gen-grpc={plugin}", *protos], check=True, cwd=PROTO)
    open(os.path.join(out, "rung", "v1", "__init__.py"), "w").close()


def _files(root):
    for base, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for f in sorted(files):
            if not f.endswith((".pyc", ".pyo")):
                path = os.path.join(base, f)
                yield path, os.path.relpath(path, root).replace(os.sep, "/")


def _record_line(arcname, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}"


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    version, metadata = _metadata()
    dist_info = f"{NAME}-{version}.dist-info"
    os.makedirs(os.path.join(metadata_directory, dist_info), exist_ok=True)
    with open(os.path.join(metadata_directory, dist_info, "METADATA"), "w") as f:
        f.write(metadata)
    return dist_info


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    version, metadata = _metadata()
    dist_info = f"{NAME}-{version}.dist-info"
    wheel_name = f"{NAME}-{version}-py3-none-any.whl"
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(os.path.join(HERE, "rung"), os.path.join(tmp, "rung"),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "v1"))
        _generate(tmp)
        record = []
        with zipfile.ZipFile(os.path.join(wheel_directory, wheel_name), "w", zipfile.ZIP_DEFLATED) as z:
            def add(arcname, data):
                z.writestr(arcname, data)
                record.append(_record_line(arcname, data))
            for path, arcname in _files(tmp):
                with open(path, "rb") as f:
                    add(arcname, f.read())
            add(f"{dist_info}/METADATA", metadata.encode())
            add(f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: rung_build\nRoot-Is-Purelib: true\n"
                                      b"Tag: py3-none-any\n")
            record.append(f"{dist_info}/RECORD,,")
            z.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return wheel_name


def build_sdist(sdist_directory, config_settings=None):
    """A source archive that carries the generated rung/v1, so it builds without proto/."""
    import tarfile
    version, metadata = _metadata()
    base = f"{NAME}-{version}"
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, base)
        shutil.copytree(HERE, root, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info"))
        shutil.rmtree(os.path.join(root, "rung", "v1"), ignore_errors=True)
        _generate(root)
        with open(os.path.join(root, "PKG-INFO"), "w") as f:
            f.write(metadata)
        name = base + ".tar.gz"
        with tarfile.open(os.path.join(sdist_directory, name), "w:gz") as t:
            t.add(root, arcname=base)
    return name
