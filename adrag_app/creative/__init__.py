"""Campaign creatives: placements (data), brand kit, copy, layout and contrast.

Pure functions on images and data; the service (:mod:`adrag_app.service.creatives`) reads
the volume, calls these and writes the files.
"""
