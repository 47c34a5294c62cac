#!/bin/sh
# Runs a slave in the network namespace of its slot: $1 is the namespace prefix (netns.py), the
# rest the slave's command. The process keeps its pid, environment and inherited descriptors.
prefix=$1
shift
exec ip netns exec "$prefix-slot${MESHMASTER_SLOT:-spare}" "$@"
