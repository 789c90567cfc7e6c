#!/bin/sh
# Serves this folder on $PORT with the stack's python3.
exec python3 -m http.server "${PORT:-5000}"
