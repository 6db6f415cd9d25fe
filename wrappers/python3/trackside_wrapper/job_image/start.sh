#!/bin/sh
# Starts a Trackside job in its container. The runner mounts the job's runtime environment (its
# runtime_env, secrets and platform token) as a file, so the values never appear in the
# container's configuration (`inspect`); they are exported here and the wrapper replaces this shell.
set -e
if [ -r /run/trackside/env ]; then
    set -a
    . /run/trackside/env
    set +a
fi
exec /opt/trackside/venv/bin/python -m trackside_wrapper run /opt/trackside/job \
    --host "${TRACKSIDE_JOB_HOST:-0.0.0.0}" --port "${TRACKSIDE_JOB_PORT:-7000}"
