"""The embedded single-process server: a gateway and the persister loop composed in one process.

Neither service imports the other; this entry point wires them through an in-process stream.
"""
