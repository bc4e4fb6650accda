"""ACS operator, 2D->ACS converter, encoders, decoder, heads, presets and checkpoints.

>>> from napari_acs.models import create_model
>>> model = create_model("tf_efficientnet_lite0", conv="acs")   # ImageNet encoder, ACS
>>> twin = create_model("tf_efficientnet_lite0", conv="3d")     # same net, native 3D
"""

from napari_acs.models.acs_conv import ACSConv3d, acs_conv3d
from napari_acs.models.acs_paths import ACSPaths, configure_acs  # the context manager: acs_paths.acs_paths
from napari_acs.models.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from napari_acs.models.converter import UnsupportedModuleError, convert_to_3d, convert_to_acs
from napari_acs.models.factory import create_model
from napari_acs.models.registry import Preset, get_preset, list_models, register_preset
from napari_acs.models.weights import (
    WeightsError,
    WeightsNotAvailableError,
    create_timm_2d,
    pretrained_2d,
    state_dict_2d,
    weight_source,
    weights_available,
)

__all__ = [
    "ACSConv3d",
    "ACSPaths",
    "CheckpointError",
    "Preset",
    "UnsupportedModuleError",
    "WeightsError",
    "WeightsNotAvailableError",
    "acs_conv3d",
    "configure_acs",
    "convert_to_3d",
    "convert_to_acs",
    "create_model",
    "create_timm_2d",
    "get_preset",
    "list_models",
    "load_checkpoint",
    "load_model",
    "pretrained_2d",
    "register_preset",
    "save_checkpoint",
    "state_dict_2d",
    "weight_source",
    "weights_available",
]
