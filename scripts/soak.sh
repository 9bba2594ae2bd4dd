#!/usr/bin/env bash
# Soak run of blockserve: fio verify, nbdcopy round trips, libnbd random I/O from
# several connections against a model, and kill -9 + restart, in a loop until
# DURATION has passed; every byte the model says must be durable is checked after
# each restart. Prints operations, restarts, bytes verified and errors; exits
# non-zero on any mismatch (77 = SKIPPED: a required client is missing).
#
#   scripts/soak.sh DURATION [--blockserve PATH] [--workers N] [--seed N]
#                            [--summary FILE.json] [--keep] [--keep-going]
#
# DURATION: seconds, or 90s / 2m / 1h. The binary defaults to $BLOCKSERVE, else
# build/bin/blockserve. Files go to a temp dir under /var/tmp (O_DIRECT needs a
# real file system; override with BLOCKSERVE_TEST_TMPDIR).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi

args=("$@")
have_binary=0
for a in "${args[@]}"; do
  [[ "$a" == --blockserve || "$a" == --blockserve=* ]] && have_binary=1
done
if ((!have_binary)); then
  args+=(--blockserve "${BLOCKSERVE:-$here/../build/bin/blockserve}")
fi

# Debian's interpreter: python3-libnbd (the nbd module) is installed for it only.
export PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 "$here/soak.py" "${args[@]}"
