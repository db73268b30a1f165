"""Hatchling build hook: a platform wheel that carries a prebuilt gomap-worker.

With ``GOMAP_WHEEL_PLATFORM=GOOS/GOARCH`` (one of PLATFORMS) in the environment, building the
wheel cross-compiles ``./cmd/gomap-worker`` from worker/ (static, ``-trimpath``, stripped, the
version stamped), puts it in the wheel as ``gomap/_bin/gomap-worker`` (``.exe`` on Windows) and
tags the wheel ``py3-none-<platform>``. Without the variable, the wheel is the pure one it always
was (no binary: the worker is built from the bundled source on first use), and so is an editable
install. ``./dev wheels`` builds every platform's wheel and the sdist.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PLATFORMS = {
    # A static Go binary needs no glibc symbols, so the oldest manylinux tag pip knows is right.
    "linux/amd64": "manylinux_2_17_x86_64",
    "linux/arm64": "manylinux_2_17_aarch64",
    # Go 1.26 binaries need macOS 12 Monterey or later (Go 1.25 dropped macOS 11): a macosx_11_0
    # tag would let pip on Big Sur install a worker that does not start there.
    "darwin/amd64": "macosx_12_0_x86_64",
    "darwin/arm64": "macosx_12_0_arm64",
    "windows/amd64": "win_amd64",
}
"""GOOS/GOARCH -> the wheel's platform tag."""

BUILD_TIMEOUT = 600.0


class GoWorkerHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        platform = os.environ.get("GOMAP_WHEEL_PLATFORM", "")
        if self.target_name != "wheel" or version != "standard" or not platform:
            return
        if platform not in PLATFORMS:
            raise ValueError(f"GOMAP_WHEEL_PLATFORM={platform!r}: not one of {', '.join(PLATFORMS)}")
        goos, goarch = platform.split("/")
        go = shutil.which("go")
        if go is None:
            raise RuntimeError("building a platform wheel cross-compiles gomap-worker: it needs Go on PATH")
        name = "gomap-worker.exe" if goos == "windows" else "gomap-worker"
        self._tmp = tempfile.mkdtemp(prefix="gomap-wheel-")
        binary = Path(self._tmp) / name
        env = {
            **os.environ,
            "CGO_ENABLED": "0",
            "GOOS": goos,
            "GOARCH": goarch,
            "GOFLAGS": "-mod=vendor",
            "GOPROXY": "off",
            "GOTOOLCHAIN": "local",
        }
        ldflags = f"-s -w -X main.version={self.metadata.version}"
        args = [go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(binary), "./cmd/gomap-worker"]
        worker = Path(self.root) / "worker"
        out = subprocess.run(
            args, cwd=worker, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False
        )
        if out.returncode != 0:
            raise RuntimeError(f"go build of gomap-worker for {platform} failed:\n{out.stderr.strip()}")
        binary.chmod(0o755)
        build_data["pure_python"] = False
        build_data["tag"] = f"py3-none-{PLATFORMS[platform]}"
        build_data["force_include"][str(binary)] = f"gomap/_bin/{name}"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        tmp = getattr(self, "_tmp", None)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
