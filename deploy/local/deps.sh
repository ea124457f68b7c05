#!/usr/bin/env bash
# Installs what dualwrite needs to build and test, idempotently: Debian packages, then a pinned
# Apache Kafka 3.9.x broker fetched from Maven Central into .deps/kafka (git-ignored).
# Works as root (CI) and as a normal user with sudo. Says briefly what it did.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$top/deploy/local/kafka-pom.xml")

pkgs=(build-essential pkg-config librdkafka-dev libcurl4-openssl-dev libcjson-dev libpq-dev
      libmicrohttpd-dev libcmocka-dev postgresql-15 postgresql-client-15 openjdk-17-jre-headless
      maven curl valgrind procps iproute2 ca-certificates python3-jsonschema)

missing=()
for p in "${pkgs[@]}"; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[ "$st" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	echo "deps: installing Debian packages: ${missing[*]}"
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
	echo "deps: Debian packages present"
fi

kdir="$top/.deps/kafka-$KAFKA_VERSION"
if [ -f "$kdir/.complete" ]; then
	echo "deps: Kafka $KAFKA_VERSION present in .deps/"
else
	echo "deps: fetching Apache Kafka $KAFKA_VERSION from Maven Central"
	rm -rf "$kdir"
	mkdir -p "$kdir"
	mvn -q -B -f "$top/deploy/local/kafka-pom.xml" dependency:copy-dependencies \
		-DoutputDirectory="$kdir/libs" -DincludeScope=runtime
	touch "$kdir/.complete"
fi
ln -sfn "kafka-$KAFKA_VERSION" "$top/.deps/kafka"
