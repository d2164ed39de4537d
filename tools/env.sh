# Sourced by rotor's scripts: `source "$(dirname "$0")/env.sh"`.
# The project's Python is Debian's (it has python3-torch/numpy/pytest); the `python3` first on
# PATH on developer machines may be another build without them, so scripts name it explicitly.
ROTOR_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROTOR_ROOT
export ROTOR_PY=/usr/bin/python3
# Set, not appended: a PYTHONPATH inherited from another interpreter would shadow Debian's.
export PYTHONPATH="${ROTOR_ROOT}/python"
