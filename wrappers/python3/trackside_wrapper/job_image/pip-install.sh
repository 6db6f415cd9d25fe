#!/bin/sh
# `pip install` during an image build. The job's build environment (build_env and its secret
# build env) arrives as the `build_env` secret mount and is exported for this step only; a CA
# bundle the build machine trusts may arrive as `ca_bundle`.
set -e
if [ -s /run/secrets/build_env ]; then
    set -a
    . /run/secrets/build_env
    set +a
fi
if [ -s /run/secrets/ca_bundle ]; then
    export PIP_CERT=/run/secrets/ca_bundle
fi
exec /opt/trackside/venv/bin/pip install --disable-pip-version-check --no-input "$@"
