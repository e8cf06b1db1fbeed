#!/usr/bin/env bash
# Bad input at every service: schemathesis (PyPI) generates requests from each
# service's /openapi.json (the documented examples, then random ones), sends
# them with an admin's token, and checks that no answer is a 5xx and every
# answer conforms to the schema (status code, content type, body).
# Bounded by API_FUZZ_EXAMPLES (25) examples per operation.
#   USER_URL=... PRODUCT_URL=... scripts/api-fuzz.sh
#                          against a running stack (./test-system.sh does this)
#   scripts/api-fuzz.sh --own-stack
#                          against a throwaway stack of its own beside any
#                          `make up` one, stopped at the end (`make test`):
#                          state in .local/fuzz, databases fuzz_*, HTTP ports
#                          18380-18384, broker 127.0.0.1:19392 (memory)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

own_stack_if_asked schemathesis fuzz 18380 15351 19392 "$@"

SCHEMATHESIS_VERSION=4.32.5
if ! st --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  log "installing schemathesis $SCHEMATHESIS_VERSION (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
# shellcheck disable=SC1091
source "$STATE_DIR/admin.env"
roster_urls "$HTTP_PORT_BASE"
token=$(admin_token "$USER_URL") || die "the admin cannot log in at $USER_URL"

failed=()
for entry in "${ROSTER[@]}"; do
  read -r service _ _ var <<<"$entry"
  name=${service%-service}; url=${!var}
  log "schemathesis: $service ($url/openapi.json)"
  # (Not the "coverage" phase: on every operation with a path parameter it
  # stops with a runtime error, not a finding. Hypothesis re-parses the source
  # of one of schemathesis 4.32.5's lambdas to name it, and CPython 3.11.7's
  # ast module raises "AST constructor recursion depth mismatch". The
  # operations without one pass it.)
  # (Not /logout: it would revoke the token every later request uses.)
  if ! st run "$url/openapi.json" --url "$url/api/v1" \
      -H "Authorization: Bearer $token" --exclude-path /logout \
      --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
      --max-examples "${API_FUZZ_EXAMPLES:-25}" --phases examples,fuzzing \
      --generation-deterministic --workers 2 --suppress-health-check all \
      >"$STATE_DIR/logs/api-fuzz-$name.log" 2>&1; then
    tail -n 60 "$STATE_DIR/logs/api-fuzz-$name.log"
    failed+=("$name-service")
  fi
done
[ ${#failed[@]} -eq 0 ] || die "schemathesis found problems in: ${failed[*]} (logs: $STATE_DIR/logs/api-fuzz-*.log)"
log "schemathesis: no 5xx and no schema violation in any service"
