"""Bundled example logs for `shipper demo`: a tiny kubelet log tree (CRI and Docker files)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

_PODS = Path(__file__).parent / "pods"
DEMO_CONFIG = Path(__file__).parent / "demo.yaml"  # the pipeline the demo runs


def install_examples(root: str) -> str:
    """Lay out <root>/var/log/pods/... and the /var/log/containers links kubelet would make;
    returns the glob that matches the links."""
    pods = Path(root, "var/log/pods")
    containers = Path(root, "var/log/containers")
    shutil.copytree(_PODS, pods)
    containers.mkdir(parents=True)
    for log in sorted(pods.glob("*/*/0.log")):
        namespace, pod, _uid = log.parent.parent.name.split("_")
        container = log.parent.name
        container_id = hashlib.sha256(str(log.relative_to(pods)).encode()).hexdigest()
        link = containers / f"{pod}_{namespace}_{container}-{container_id}.log"
        os.symlink(os.path.relpath(log, containers), link)
    return str(containers / "*.log")
