"""Data plumbing every system shares.

pipeline: grain datasets and the device feeder; hdf5: files, per-process handles, window
sources; splits: the one grouped, stratified splitter; synthetic: generated-once data.
"""
