#!/usr/bin/env python3
"""An independent reader of a flow-log tree, for the writer's tests: walks
PREFIX, and for each *.log.gz prints its path relative to PREFIX, then each
line split by spaces as csv would (the header first), with the field count.
Uses only the standard library's gzip and csv, not vpcfw's code."""
import csv
import gzip
import io
import os
import sys

prefix = sys.argv[1]
for root, dirs, files in sorted(os.walk(prefix)):
    dirs.sort()
    for name in sorted(files):
        if not name.endswith(".log.gz"):
            continue
        path = os.path.join(root, name)
        print("file", os.path.relpath(path, prefix), oct(os.stat(path).st_mode & 0o777))
        with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
            for row in csv.reader(io.StringIO(f.read()), delimiter=" "):
                print(len(row), " ".join(row))
