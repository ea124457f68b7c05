# TAP helpers for the shell test suites (source it). The caller sets $out and $errf (temporary
# files that receive a checked command's stdout and stderr); n and failed count the results.
# ok NAME / not_ok NAME print one TAP line (not_ok also prints the captured output as comments);
# check NAME EXPECTED_RC PATTERN COMMAND... runs COMMAND with stdin from /dev/null and passes
# when it exits with EXPECTED_RC and, if PATTERN is not empty, its stdout or stderr matches the
# extended regular expression PATTERN.
n=0
failed=0

ok() { n=$((n + 1)); echo "ok $n - $1"; }

not_ok() {
	n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"
	sed 's/^/# stdout: /' "$out"; sed 's/^/# stderr: /' "$errf"
}

check() {
	local name=$1 want=$2 pattern=$3
	shift 3
	"$@" >"$out" 2>"$errf" </dev/null
	local rc=$?
	if [ "$rc" -ne "$want" ]; then
		echo "# $name: exit $rc, expected $want"
		not_ok "$name"
	elif [ -n "$pattern" ] && ! grep -qE -- "$pattern" "$out" "$errf"; then
		echo "# $name: output does not match /$pattern/"
		not_ok "$name"
	else
		ok "$name"
	fi
}
