"""The presets as a table: parameters of the ACS and 3D twins, weight source, availability."""

from __future__ import annotations

from napari_acs.models.factory import create_model
from napari_acs.models.registry import get_preset, list_models
from napari_acs.models.weights import weight_source, weights_available


def count_parameters(model) -> int:
    """Number of parameters of a module."""
    return sum(p.numel() for p in model.parameters())


def model_table(pattern: str = "*") -> list[dict[str, str]]:
    """One row per preset: name, ACS/3D segmentation parameters (M), ratio, weight source."""
    rows = []
    for name in list_models(pattern):
        acs = count_parameters(create_model(name, conv="acs", pretrained=False))
        native = count_parameters(create_model(name, conv="3d", pretrained=False))
        rows.append({
            "preset": name,
            "params ACS (M)": f"{acs / 1e6:.2f}",
            "params 3D (M)": f"{native / 1e6:.2f}",
            "ACS/3D": f"{acs / native:.2f}",
            "patch": "x".join(map(str, get_preset(name).patch_size)),
            "ImageNet weights": weight_source(name),
            "offline": "yes" if weights_available(name) else "no",
        })
    return rows
