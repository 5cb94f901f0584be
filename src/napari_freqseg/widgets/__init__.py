"""napari dock widgets: thin adapters that turn layers into core calls and results into layers."""
