#!/bin/sh
# Runs `samtal-$SAMTAL_SERVICE <command>`; in a container the HTTP server listens on
# all interfaces unless SAMTAL_<SVC>_HTTP_HOST says otherwise.
set -eu
svc_upper=$(printf '%s' "${SAMTAL_SERVICE:?SAMTAL_SERVICE is not set}" | tr '[:lower:]' '[:upper:]')
host_var="SAMTAL_${svc_upper}_HTTP_HOST"
eval "current=\${${host_var}:-}"
if [ -z "${current}" ]; then
    export "${host_var}=0.0.0.0"
fi
exec "samtal-${SAMTAL_SERVICE}" "$@"
