"""The foundation every layer stands on: user errors, devices, the strict key/shape check, atomic I/O and hashes,
bounded YAML, folders, progress, third-party warnings, pseudonyms, output guards and the task runner. Imports
nothing of autorad above it."""
