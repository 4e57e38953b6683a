#!/bin/bash
# deploy/local/kafka formats KRaft storage with any valid cluster ID, also one that begins
# with "-" (one random ID in 64 does, and kafka-storage took it for an option), for a single
# broker and for a 3-node cluster, whose configuration it checks too. Needs Java and the
# Kafka jars (fetched into PAYQ_CACHE the first time), not a running broker.
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"

KAFKA=${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/deploy/local/kafka
DASH_ID=-AABAgMEBQYHCAkKCwwNDg
T=$(mktemp -d -t payq-kafka-format.XXXXXX)
on_exit "rm -rf '$T'"

prop() { sed -n "s/^$1=//p" "$2"; }

PAYQ_KAFKA_CLUSTER_ID=$DASH_ID "$KAFKA" format "$T/one" 2>"$T/one.err" ||
	die "format of a single broker with cluster id $DASH_ID failed: $(tail -n 3 "$T/one.err")"
assert_eq "$DASH_ID" "$(prop cluster.id "$T/one/data/meta.properties")" \
	"single broker formatted with cluster id $DASH_ID"
assert_eq 1 "$(prop node.id "$T/one/data/meta.properties")" "single broker is node 1"
assert_eq 1 "$(prop min.insync.replicas "$T/one/server.properties")" "single broker: min.insync.replicas=1"

PAYQ_KAFKA_CLUSTER_ID=$DASH_ID "$KAFKA" format "$T/three" --brokers 3 2>"$T/three.err" ||
	die "format of a 3-node cluster with cluster id $DASH_ID failed: $(tail -n 3 "$T/three.err")"
for i in 1 2 3; do
	meta=$T/three/node$i/data/meta.properties
	conf=$T/three/node$i/server.properties
	assert_eq "$DASH_ID $i" "$(prop cluster.id "$meta") $(prop node.id "$meta")" \
		"cluster node $i formatted with cluster id $DASH_ID and node.id $i"
	assert_eq "3 2 false" "$(prop default.replication.factor "$conf") $(prop min.insync.replicas "$conf") $(prop unclean.leader.election.enable "$conf")" \
		"cluster node $i: replication factor 3, min.insync.replicas 2, no unclean leader election"
	voters=$(prop controller.quorum.voters "$conf")
	[[ $voters =~ ^1@127\.0\.0\.1:[0-9]+,2@127\.0\.0\.1:[0-9]+,3@127\.0\.0\.1:[0-9]+$ ]] ||
		die "cluster node $i: controller.quorum.voters is '$voters', not the three nodes"
done
ports=$(cat "$T"/three/node*/broker.port "$T"/three/node*/controller.port | sort -u | wc -l)
assert_eq 6 "$ports" "the cluster's 3 broker and 3 controller ports are distinct"

if PAYQ_KAFKA_CLUSTER_ID='-x' "$KAFKA" format "$T/bad" 2>"$T/bad.err"; then
	die "a malformed PAYQ_KAFKA_CLUSTER_ID was accepted"
fi
pass "a malformed PAYQ_KAFKA_CLUSTER_ID is refused: $(tail -n 1 "$T/bad.err")"
if PAYQ_KAFKA_VERSION=2.8.0 "$KAFKA" format "$T/old" 2>"$T/old.err"; then
	die "PAYQ_KAFKA_VERSION=2.8.0 (ZooKeeper era) was accepted"
fi
pass "PAYQ_KAFKA_VERSION=2.8.0 is refused: $(tail -n 1 "$T/old.err")"
