"""Rigid co-registration of one sequence to the reference (SimpleITK, Mattes mutual information).

Sequences of one exam share the scanner's patient frame, so the true motion between them is
small (the patient moved a few mm or degrees). The registration starts from whichever of two
centred initial guesses fits better (the scanner frame as it is, or the intensity centres
aligned: SimpleITK's moments initialiser), then refines an :class:`SimpleITK.Euler3DTransform`
on three resolutions. A result that does not fit (low final mutual information) or moves the
head implausibly far is refused: :class:`RegistrationFailed`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import SimpleITK as sitk

from napari_acs.progress import CancelSignal, Cancelled, ProgressCallback, is_cancelled, report


@dataclass(frozen=True)
class RegistrationSettings:
    """How :func:`register_rigid` runs: a modest budget, so one sequence takes seconds.

    Both images are first smoothed and resampled to ``working_mm`` isotropic voxels (the
    finest level: sub-voxel accuracy comes from interpolation, and a 1 mm pyramid would
    cost tens of seconds per sequence); ``shrink`` / ``smoothing_mm`` the pyramid levels (coarse to fine), ``sampling`` the fraction
    of the fixed image's voxels sampled at random per level (``seed`` fixes which),
    ``iterations`` the most gradient steps per level, ``step_mm`` / ``min_step_mm`` the regular
    step optimiser's first and last step (mm at the head's surface), ``bins`` the histogram
    bins of Mattes mutual information. ``min_information`` is the largest (least negative)
    final metric accepted; ``max_rotation_deg`` / ``max_shift_mm`` bound a plausible motion
    between two sequences of one exam.
    """

    working_mm: float = 2.0
    shrink: tuple[int, ...] = (4, 2, 1)
    smoothing_mm: tuple[float, ...] = (4.0, 2.0, 0.0)
    sampling: tuple[float, ...] = (0.5, 0.2, 0.05)
    iterations: int = 100
    step_mm: float = 2.0
    min_step_mm: float = 0.01
    bins: int = 32
    seed: int = 7
    min_information: float = -0.1
    max_rotation_deg: float = 25.0
    max_shift_mm: float = 40.0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class Registration:
    """A rigid registration's result: ``transform`` maps reference (fixed) points to the
    sequence's (moving) points in LPS mm; ``metric`` the final Mattes mutual information
    (negative; lower is better); ``iterations`` over all levels; ``stop`` the optimiser's
    reason; ``rotation_deg`` / ``shift_mm`` the motion at the fixed image's centre;
    ``start`` the initial guess used (``"scanner"`` or ``"moments"``)."""

    transform: sitk.Euler3DTransform
    metric: float
    iterations: int
    stop: str
    rotation_deg: float
    shift_mm: float
    start: str

    def summary(self) -> dict:
        """JSON-ready figures (everything but the transform)."""
        return {"metric": round(self.metric, 5), "iterations": self.iterations, "stop": self.stop,
                "rotation_deg": round(self.rotation_deg, 3), "shift_mm": round(self.shift_mm, 3),
                "start": self.start}


class RegistrationFailed(ValueError):
    """The registration did not find a plausible alignment; ``str()`` says why in one line."""


def register_rigid(
    fixed: sitk.Image,
    moving: sitk.Image,
    settings: RegistrationSettings = RegistrationSettings(),
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelSignal = None,
) -> Registration:
    """Rigidly register ``moving`` to ``fixed`` (float32 images in physical space).

    ``progress(fraction, message)`` is called every iteration; ``cancel`` is checked there
    too and stops the optimiser (``registration.StopRegistration()``), then
    :class:`~napari_acs.progress.Cancelled` is raised. Raises :class:`RegistrationFailed`
    when the final mutual information is above ``settings.min_information`` or the motion
    exceeds the settings' bounds.
    """
    fixed = working_image(fixed, settings.working_mm)
    moving = working_image(moving, settings.working_mm)
    method = _method(settings)
    start, initial = _initial_transform(method, fixed, moving)
    method.SetInitialTransform(initial, inPlace=False)
    state = {"iterations": 0, "cancelled": False}
    levels = len(settings.shrink)

    def on_iteration() -> None:
        state["iterations"] += 1
        if is_cancelled(cancel):
            state["cancelled"] = True
            method.StopRegistration()
            return
        level = method.GetCurrentLevel()
        done = (level + min(method.GetOptimizerIteration() / settings.iterations, 1.0)) / levels
        report(progress, done, f"level {level + 1}/{levels}, mutual information {method.GetMetricValue():.3f}")

    method.AddCommand(sitk.sitkIterationEvent, on_iteration)
    found = method.Execute(fixed, moving)
    if state["cancelled"] or is_cancelled(cancel):
        raise Cancelled("registration cancelled")
    transform = _as_euler(found)
    metric = float(method.GetMetricValue())
    centre = np.array(fixed.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in fixed.GetSize()]))
    result = Registration(
        transform=transform,
        metric=metric,
        iterations=state["iterations"],
        stop=method.GetOptimizerStopConditionDescription(),
        rotation_deg=_rotation_deg(transform),
        shift_mm=float(np.linalg.norm(np.array(transform.TransformPoint(centre.tolist())) - centre)),
        start=start,
    )
    _check(result, settings)
    return result


def working_image(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """``image`` as float32 on ``spacing_mm`` isotropic voxels over its field of view (same axes),
    smoothed first along the axes whose voxels are finer (a Gaussian of the missing width)."""
    image = sitk.Cast(image, sitk.sitkFloat32)
    spacing = np.array(image.GetSpacing())
    sigma = 0.5 * np.sqrt(np.clip(spacing_mm**2 - spacing**2, 0.0, None))
    if sigma.max() > 0.1 * spacing_mm:
        image = sitk.SmoothingRecursiveGaussian(image, [float(s) for s in np.maximum(sigma, 1e-3)])
    size = [max(int(math.ceil(n * s / spacing_mm)), 1) for n, s in zip(image.GetSize(), spacing)]
    edge = image.TransformContinuousIndexToPhysicalPoint([-0.5] * 3)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    origin = np.array(edge) + direction @ np.full(3, 0.5 * spacing_mm)
    return sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, origin.tolist(), [spacing_mm] * 3,
                         image.GetDirection(), 0.0, sitk.sitkFloat32)


def _method(settings: RegistrationSettings) -> sitk.ImageRegistrationMethod:
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings.bins)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentagePerLevel(list(settings.sampling), settings.seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=settings.step_mm, minStep=settings.min_step_mm, numberOfIterations=settings.iterations,
        relaxationFactor=0.5, gradientMagnitudeTolerance=1e-8,
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(settings.shrink))
    method.SetSmoothingSigmasPerLevel(list(settings.smoothing_mm))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return method


def _initial_transform(method: sitk.ImageRegistrationMethod, fixed: sitk.Image, moving: sitk.Image
                       ) -> tuple[str, sitk.Euler3DTransform]:
    """The better-fitting centred start: the scanner frame (identity about the fixed image's
    intensity centre) or the moments initialiser (intensity centres aligned)."""
    moments = sitk.Euler3DTransform(sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS))
    scanner = sitk.Euler3DTransform()
    scanner.SetCenter(moments.GetCenter())
    scores = {}
    for name, transform in (("scanner", scanner), ("moments", moments)):
        method.SetInitialTransform(transform, inPlace=False)
        scores[name] = method.MetricEvaluate(fixed, moving)
    best = min(scores, key=scores.get)
    return best, scanner if best == "scanner" else moments


def _as_euler(transform: sitk.Transform) -> sitk.Euler3DTransform:
    """The registration's result as one Euler transform (SimpleITK may wrap it in a composite)."""
    if isinstance(transform, sitk.CompositeTransform) or transform.GetName() == "CompositeTransform":
        composite = sitk.CompositeTransform(transform)
        transform = composite.GetNthTransform(composite.GetNumberOfTransforms() - 1)
    return sitk.Euler3DTransform(transform)


def _rotation_deg(transform: sitk.Euler3DTransform) -> float:
    """The rotation angle (degrees) of a rigid transform's matrix."""
    matrix = np.array(transform.GetMatrix()).reshape(3, 3)
    cosine = (np.trace(matrix) - 1.0) / 2.0
    return math.degrees(math.acos(min(max(cosine, -1.0), 1.0)))


def _check(result: Registration, settings: RegistrationSettings) -> None:
    if not math.isfinite(result.metric) or result.metric > settings.min_information:
        raise RegistrationFailed(
            f"did not converge to a fit: mutual information {result.metric:.3f} after {result.iterations} "
            f"iterations (a fit is below {settings.min_information:g}); is it a scan of the same head?")
    if result.rotation_deg > settings.max_rotation_deg or result.shift_mm > settings.max_shift_mm:
        raise RegistrationFailed(
            f"found an implausible motion (rotation {result.rotation_deg:.1f} deg, shift {result.shift_mm:.1f} mm; "
            f"at most {settings.max_rotation_deg:g} deg and {settings.max_shift_mm:g} mm between sequences of one exam)")
