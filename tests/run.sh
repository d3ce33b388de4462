#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs, then runs
#   1. the browser client's and the Node client's unit tests (node --test),
#   2. every Python suite (contract, HTTP, WebSocket, multi-process, end-to-end in Chromium;
#      on one Redis and on a private 6-node Redis Cluster the suites start themselves),
#      and tests/faults' short fault schedule; its soak is `python -m tests.faults --minutes 30`.
# Extra arguments go to pytest, e.g. `bash tests/run.sh -k contract -x`; the suites run in two
# processes (TEST_WORKERS=0: in one, as `--pdb` wants).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)  # forms the test cluster
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v ip >/dev/null || missing+=(iproute2)  # the fault suite's hosts (network namespaces)
command -v nft >/dev/null || missing+=(nftables)  # the fault suite's lossy link (slow_link)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)  # the proxy demo
command -v caddy >/dev/null || missing+=(caddy)  # the proxy demo's second proxy
[ -x .venv/bin/python ] || python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
    echo "tests/run.sh: installing ${missing[*]} from Debian's packages" >&2
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# The test and bench tools are PEP 735 dependency groups (pyproject.toml), which pip
# installs from 25.1 on (`--group`); a venv starts with its Python's older pip.
.venv/bin/python -m pip install -q --disable-pip-version-check 'pip>=25.1'
# every extra the suites exercise + the test group and the bench smoke's needs
.venv/bin/python -m pip install -q --disable-pip-version-check \
    -e '.[service,proxy-demo,granian,oidc]' --group bench

# The proxy demo's Express app (its lock file is committed).
if [ ! -d client_js/examples/express/node_modules/express ]; then
    (cd client_js/examples/express && npm ci --no-audit --no-fund --loglevel=error)
fi

# The OpenID provider of the single sign-on tests (panva's oidc-provider; lock file committed).
if [ ! -d tests/support/oidc_provider/node_modules/oidc-provider ]; then
    (cd tests/support/oidc_provider && npm ci --no-audit --no-fund --loglevel=error)
fi

if [ -d client_js/test ]; then
    # The client's dev tools (terser, esbuild, axe-core, typescript; package-lock.json):
    # npm ci only when the lock file changed since the last install.
    lock_sum=$(sha256sum client_js/package-lock.json | cut -d' ' -f1)
    if [ "$(cat client_js/node_modules/.sessionwatch-lock 2>/dev/null)" != "$lock_sum" ]; then
        (cd client_js && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
        echo "$lock_sum" >client_js/node_modules/.sessionwatch-lock
    fi
    (cd client_js && node --test test/)
fi
(cd client_js/node && node --test test/)
# Two test processes (pytest-xdist): most tests wait on real processes, Redis, nginx and
# Chromium rather than on the CPU, so two halve the run even on two cores; worksteal
# evens out the long tests. TEST_WORKERS=0 runs everything in this one process.
exec .venv/bin/python -m pytest -n "${TEST_WORKERS:-2}" --dist worksteal "$@"
