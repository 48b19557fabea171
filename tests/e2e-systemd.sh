#!/bin/bash
# End-to-end test of the Debian package under a real systemd:
#   1. builds the .deb and the .rpm (make deb rpm, test suites skipped:
#      make check ran them), runs lintian on the .deb and checks the
#      .rpm's file list;
#   2. makes a Debian 12 root with debootstrap, cached as a tarball in
#      ${RTCSIGNALD_E2E_CACHE:-${XDG_CACHE_HOME:-~/.cache}/rtcsignald-e2e};
#   3. installs the .deb there with apt, its dependencies from Debian;
#   4. boots the root with systemd-nspawn -b (own network namespace) where
#      e2e.service runs tests/e2e-inside.sh (which also upgrades to the
#      same .deb and purges it) and powers off;
#   5. prints one line per check and "e2e: N passed, N failed".
# Needs root, debootstrap, systemd-container, dpkg-dev, debhelper,
# lintian, rpm, zstd (tools/debian-packages).  Run by "make check-system"
# and .ci/run; BUILDDIR names a configured build tree (default: the source
# tree).
# Every step is bounded: about 4 minutes with a cold cache, 2 warm.
set -uo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILDDIR:-$src}
cache=${RTCSIGNALD_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rtcsignald-e2e}
suite=bookworm
# What the root needs besides what the package pulls in: systemd to boot,
# ss for the listening check, curl and the Python client for the checks,
# redis-server for two instances routing through it (issue 14).  The
# cache key hashes this list, so a changed list makes a new root.
root_packages=systemd,systemd-sysv,dbus,iproute2,curl,python3-websockets,redis-server
t0=$(date +%s)
passed=0 failed=0

result() { # ok|FAIL, description
	echo "$1 - $2"
	if [ "$1" = ok ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
}
finish() {
	echo "e2e: $passed passed, $failed failed ($(($(date +%s) - t0)) s)"
	[ "$failed" -eq 0 ]
	exit
}
die() { # a step that the checks after it need failed
	result FAIL "$1"
	[ -f "${2:-}" ] && tail -n 40 "$2" | sed 's/^/    /'
	finish
}
step() { echo "== $1 ($(($(date +%s) - t0)) s)"; }

[ "$(id -u)" = 0 ] || die "e2e needs root (debootstrap, systemd-nspawn)"
for tool in debootstrap systemd-nspawn dpkg-buildpackage dh rpmbuild lintian zstd; do
	command -v "$tool" >/dev/null || die "$tool is missing (see tools/debian-packages)"
done
work=$(mktemp -d /var/tmp/rtcsignald-e2e.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
root=$work/root

step "1. building the packages"
if [ ! -f "$build/Makefile" ]; then
	(cd "$build" && autoreconf -fi && ./configure -q) >"$work/configure.log" 2>&1 ||
		die "configure" "$work/configure.log"
fi
# E2E_REUSE_PACKAGES=1 takes those already in packages/ (when iterating).
if [ -z "${E2E_REUSE_PACKAGES:-}" ]; then
	rm -f "$build"/packages/rtcsignald*
	timeout 900 make -C "$build" deb rpm DEB_BUILD_OPTIONS=nocheck RPMBUILD_FLAGS=--nocheck \
		>"$work/build.log" 2>&1 || die "make deb rpm" "$work/build.log"
fi
deb=$(ls "$build"/packages/rtcsignald_*.deb 2>/dev/null | head -1)
rpm=$(ls "$build"/packages/rtcsignald-[0-9]*.rpm 2>/dev/null | head -1)
[ -f "$deb" ] && [ -f "$rpm" ] || die "make deb rpm made no packages" "$work/build.log"
result ok "built $(basename "$deb") and $(basename "$rpm")"
changes=$(ls "$build"/packages/rtcsignald_*.changes | head -1)
if lintian --fail-on error,warning "$changes" >"$work/lintian.log" 2>&1; then
	result ok "lintian: no error or warning (overrides: debian/rtcsignald.lintian-overrides)"
else
	result FAIL "lintian"
	grep -E '^[EW]:' "$work/lintian.log" | sed 's/^/    /'
fi

# The .rpm: the daemon, the CLI and its bash completion, the units, the
# config as %config(noreplace), the catalog, the man pages, real scriptlets.
files=$(rpm -qlp "$rpm" 2>/dev/null)
want=(/usr/sbin/rtcsignald /etc/rtcsignald/rtcsignald.conf
	/usr/lib/systemd/system/rtcsignald.service /usr/lib/systemd/system/rtcsignald.socket
	/usr/lib/systemd/system/rtcsignald-admin.socket /usr/lib/systemd/catalog/rtcsignald.catalog
	/usr/share/man/man8/rtcsignald.8 /usr/share/man/man5/rtcsignald.conf.5
	/usr/share/man/man1/rtcsignalctl.1 /usr/share/locale/de/LC_MESSAGES/rtcsignald.mo
	/usr/bin/rtcsignalctl /usr/share/bash-completion/completions/rtcsignalctl)
missing=
for f in "${want[@]}"; do
	grep -qE "^$f(\.gz)?$" <<<"$files" || missing="$missing $f"
done
if [ -z "$missing" ]; then result ok "rpm -qlp: ${#want[@]} expected files"; else result FAIL "rpm -qlp lacks:$missing"; fi
if rpm -qp --configfiles "$rpm" 2>/dev/null | grep -qx /etc/rtcsignald/rtcsignald.conf &&
	rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm" 2>/dev/null | grep -q '^cn /etc/rtcsignald/rtcsignald.conf$'; then
	result ok "rpm: the config is %config(noreplace)"
else
	result FAIL "rpm: the config is not %config(noreplace)"
fi
scripts=$(rpm -qp --scripts "$rpm" 2>/dev/null)
if grep -q 'systemctl --no-reload preset rtcsignald.socket' <<<"$scripts" &&
	grep -q 'systemctl try-restart rtcsignald.service' <<<"$scripts"; then
	result ok "rpm: real systemd scriptlets (preset the sockets, try-restart the service)"
else
	result FAIL "rpm: systemd scriptlets missing"
fi

step "2. a Debian 12 root"
mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)\/\{0,1\}$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $2 ~ /debian\/?$/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
mirror=${mirror:-http://deb.debian.org/debian}
security=${mirror%/debian}/debian-security
key=$(echo "$suite $root_packages $mirror" | sha256sum | cut -c1-12)
tarball=$cache/$suite-$key.tar.zst
mkdir -p "$root"
if [ -f "$tarball" ]; then
	tar --zstd -xf "$tarball" -C "$root" || die "unpacking $tarball"
	result ok "root from the cache ($tarball)"
else
	mkdir -p "$cache"
	timeout 600 debootstrap --variant=minbase --include="$root_packages" "$suite" "$root" "$mirror" \
		>"$work/debootstrap.log" 2>&1 || die "debootstrap $suite from $mirror" "$work/debootstrap.log"
	cat >"$root/etc/apt/sources.list" <<-EOF
		deb $mirror $suite main
		deb $mirror $suite-updates main
		deb $security $suite-security main
	EOF
	rm -rf "$root"/var/cache/apt/archives/*.deb
	tar --zstd -cf "$tarball.tmp" -C "$root" . && mv "$tarball.tmp" "$tarball"
	result ok "root made with debootstrap and cached ($tarball)"
fi

step "3. apt-get install ./$(basename "$deb")"
# (nspawn mounts a fresh /tmp)
cp "$deb" "$root/root/"
nspawn=(systemd-nspawn -q --register=no --keep-unit -D "$root")
if timeout 300 "${nspawn[@]}" -E DEBIAN_FRONTEND=noninteractive /bin/sh -c \
	"apt-get update -q && apt-get install -y -q --no-install-recommends /root/$(basename "$deb")" \
	>"$work/apt.log" 2>&1; then
	result ok "apt-get install of the .deb, dependencies from $mirror"
else
	die "apt-get install of the .deb" "$work/apt.log"
fi

step "4. booting the root with systemd-nspawn -b"
mkdir -p "$work/share"
cp "$src/tests/e2e-inside.sh" "$deb" "$work/share/"
cat >"$root/etc/systemd/system/e2e.service" <<'EOF'
[Unit]
Description=rtcsignald end-to-end checks
After=sockets.target

[Service]
Type=oneshot
ExecStart=/bin/bash /e2e/e2e-inside.sh /e2e/results
ExecStopPost=/bin/systemctl --no-block poweroff
TimeoutStartSec=240
StandardOutput=journal+console
EOF
ln -sf /etc/systemd/system/e2e.service "$root/etc/systemd/system/multi-user.target.wants/e2e.service"
timeout 300 "${nspawn[@]}" -b --private-network --bind="$work/share:/e2e" --console=pipe \
	>"$work/boot.log" 2>&1 </dev/null
rc=$?
[ $rc -eq 0 ] || echo "systemd-nspawn exited $rc"
if [ ! -f "$work/share/results" ]; then
	die "the checks inside the container did not run" "$work/boot.log"
fi
while IFS= read -r line; do
	case $line in
	"ok - "*) result ok "${line#ok - }" ;;
	"FAIL - "*) result FAIL "${line#FAIL - }" ;;
	*) echo "$line" ;;
	esac
done <"$work/share/results"
grep -q '^done$' "$work/share/results" || {
	result FAIL "the checks inside the container did not finish"
	tail -n 40 "$work/boot.log" | sed 's/^/    /'
}
finish
