"""Samtal's deployment tooling: one CLI (`samtal-deploy`) and what it generates in deploy/."""

from pathlib import Path

# deploy/ of the repository (the package is installed editable from deploy/src).
DEPLOY = Path(__file__).resolve().parents[2]
ROOT = DEPLOY.parent
