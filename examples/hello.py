import platform
import sys

name = sys.stdin.read().strip() or "world"
print(f"Hello, {name}, from Python {platform.python_version()} in an Assay sandbox.")
