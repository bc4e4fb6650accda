"""GUI demo: napari with the sample case opened by the plugin's reader."""

from __future__ import annotations


def run_viewer() -> int:
    """Open napari with the sample case; blocks until the window closes."""
    import napari

    from napari_acs.io.sample import sample_case_path

    viewer = napari.Viewer(title="napari-acs demo")
    viewer.open(str(sample_case_path()), plugin="napari-acs")
    for name in ("Segment",):
        try:
            viewer.window.add_plugin_dock_widget("napari-acs", name)
        except (KeyError, ValueError):
            print(f"napari-acs demo: the {name} widget is not part of this build yet; "
                  "the case is open for viewing.")
    napari.run()
    return 0
