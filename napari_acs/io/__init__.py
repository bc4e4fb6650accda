"""BraTS case discovery, loading, validation, label conventions and NIfTI writing.

No torch, Qt or napari here: this layer is shared by the GUI, the CLI and scripts.
"""

from napari_acs.io.case import (
    MODALITIES,
    BratsCase,
    BratsName,
    CaseFiles,
    SourceGeometry,
    assigned_case_files,
    find_case_files,
    find_cases,
    load_case,
    parse_name,
)
from napari_acs.io.errors import BratsInputError
from napari_acs.io.labels import (
    CONVENTIONS,
    REGIONS,
    SUB_REGION_COLOURS,
    SUB_REGION_NAMES,
    SUB_REGIONS,
    Convention,
    LabelConvention,
    colormap,
    convert_labels,
    get_convention,
    labels_to_regions,
    regions_to_labels,
    unknown_label_values,
)
from napari_acs.io.normalize import brain_bbox, brain_mask, zscore_in_mask
from napari_acs.io.sequences import SEQUENCES, assign_sequences, guess_sequence
from napari_acs.io.volume import NiftiVolume, load_volume
from napari_acs.io.writer import default_seg_name, save_map, save_segmentation

__all__ = [
    "CONVENTIONS",
    "MODALITIES",
    "REGIONS",
    "SEQUENCES",
    "SUB_REGIONS",
    "SUB_REGION_COLOURS",
    "SUB_REGION_NAMES",
    "BratsCase",
    "BratsInputError",
    "BratsName",
    "CaseFiles",
    "Convention",
    "LabelConvention",
    "NiftiVolume",
    "SourceGeometry",
    "assign_sequences",
    "assigned_case_files",
    "brain_bbox",
    "brain_mask",
    "colormap",
    "convert_labels",
    "default_seg_name",
    "find_case_files",
    "find_cases",
    "get_convention",
    "guess_sequence",
    "labels_to_regions",
    "load_case",
    "load_volume",
    "parse_name",
    "regions_to_labels",
    "save_map",
    "save_segmentation",
    "unknown_label_values",
    "zscore_in_mask",
]
