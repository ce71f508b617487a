#!/usr/bin/env bash
# Runs the kernels' property tests under valgrind memcheck: every forced kernel path
# (gconv-kernels) and every plan the library chooses (gconv's equivalence tests, the fused
# post-operations' in-place pass included: about 7 s more), on the
# portable and AVX2 tiers. valgrind does not decode AVX-512 and hides it from CPUID, so
# those are the tiers the tests find; GCONV_ISA=avx2 makes the plans that pick their own tier
# take AVX2 too. Any memcheck error fails the run.
#
#   scripts/valgrind.sh            # 32 cases per property (about three minutes on 2 cores)
#   PROPTEST_CASES=256 scripts/valgrind.sh
#
# (32, not 64: at 64 this step took 6 of CI's 15 minutes on a 2-core Zen 2; the property
# tests themselves run their full counts in the README's test command.)
set -euo pipefail
cd "$(dirname "$0")/.."
export PROPTEST_CASES="${PROPTEST_CASES:-32}" GCONV_ISA=avx2

# The test executables, from cargo's JSON messages (their names carry a hash). Built for the
# whole workspace, as the README's test command builds them: selecting one package resolves
# its dependencies' features differently and compiled the kernels twice more (minutes).
artifacts=$(cargo test --workspace --locked --no-run --message-format=json 2>/dev/null)
executable() {
    grep -F "\"name\":\"$1\"" <<<"$artifacts" | grep -F "\"kind\":[\"$2\"]" |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1 || true
}
kernels=$(executable gconv_kernels lib)
equivalence=$(executable equivalence test)
for binary in "$kernels" "$equivalence"; do
    [[ -x "$binary" ]] || { echo "valgrind: a test executable was not found" >&2; exit 1; }
done

for run in "$kernels the_reference" "$equivalence fast_kernels nan_and_infinity fused"; do
    read -r binary filters <<<"$run"
    echo "valgrind: $(basename "$binary") $filters"
    # shellcheck disable=SC2086 # the filters are separate words
    valgrind --quiet --error-exitcode=99 "$binary" --test-threads=1 $filters
done
echo "valgrind: no errors"
