"""The storage volume: its layout, the files under raw/ with their sidecars and labels, paths."""
