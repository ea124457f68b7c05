#!/usr/bin/env bash
# Starts or stops a single-node KRaft Kafka broker on loopback, state under $DW_STATE_DIR/kafka.
#   kafka.sh start PORT   (controller on PORT+1); returns once the broker answers metadata requests
#   kafka.sh stop         stops it (SIGTERM, then SIGKILL after 30 s); safe when not running
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
state=${DW_STATE_DIR:?DW_STATE_DIR is not set}/kafka
libs="$top/.deps/kafka/libs"
pidfile="$state/kafka.pid"

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

kafka_java() {
	java -Xms64m -Xmx384m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
		-Dlog4j.configuration="file:$state/log4j.properties" -cp "$libs/*" "$@"
}

# Waits until the broker lists topics over the Kafka protocol (metadata answered).
wait_ready() {
	local port=$1 deadline=$((SECONDS + 90))
	while [ $SECONDS -lt $deadline ]; do
		if ! running; then
			echo "kafka: broker exited during start-up; see $state/kafka.log" >&2
			tail -20 "$state/kafka.log" >&2 || true
			return 1
		fi
		if kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$port" --list \
			>/dev/null 2>&1; then
			return 0
		fi
		sleep 1
	done
	echo "kafka: not ready on 127.0.0.1:$port after 90 s; see $state/kafka.log" >&2
	return 1
}

start() {
	local port=${1:?usage: kafka.sh start PORT}
	local cport=$((port + 1))
	[ -d "$libs" ] || { echo "kafka: $libs missing; run make deps" >&2; exit 1; }
	if running; then
		echo "kafka: already running (pid $(cat "$pidfile")) on 127.0.0.1:$port"
		return 0
	fi
	mkdir -p "$state/data"
	cat >"$state/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$state/data
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
num.network.threads=2
num.io.threads=2
background.threads=2
log.retention.check.interval.ms=60000
PROPS
	cat >"$state/log4j.properties" <<'PROPS'
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
PROPS
	if [ ! -f "$state/data/meta.properties" ]; then
		# cluster id: 16 random bytes in base64 with only letters and digits for + and /, so it
		# never starts with '-' (which the tool would read as an option, about one start in 64)
		kafka_java kafka.tools.StorageTool format --ignore-formatted \
			-t "$(head -c 16 /dev/urandom | base64 | tr '+/' 'AB' | cut -c1-22)" \
			-c "$state/server.properties" >"$state/format.log" 2>&1 ||
			{ cat "$state/format.log" >&2; exit 1; }
	fi
	nohup java -Xms128m -Xmx512m -XX:+UseSerialGC -Djava.awt.headless=true \
		-Dlog4j.configuration="file:$state/log4j.properties" -cp "$libs/*" \
		kafka.Kafka "$state/server.properties" >"$state/kafka.log" 2>&1 </dev/null &
	echo $! >"$pidfile"
	wait_ready "$port"
	echo "kafka: ready on 127.0.0.1:$port (pid $(cat "$pidfile"))"
}

stop() {
	if ! running; then
		rm -f "$pidfile"
		return 0
	fi
	local pid
	pid=$(cat "$pidfile")
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 1 60); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.5
	done
	kill -9 "$pid" 2>/dev/null || true
	rm -f "$pidfile"
	echo "kafka: stopped"
}

case "${1:-}" in
start) start "${2:-}" ;;
stop) stop ;;
*) echo "usage: kafka.sh start PORT | stop" >&2; exit 2 ;;
esac
