#!/usr/bin/env bash
# RabbitMQ's own rabbitmqadmin (shipped with rabbitmq-server) against the management API:
# declare, bind, publish, list, get, export and delete, checking what comes back.
# Usage: workload.sh MGMT_PORT
set -euo pipefail
A=(rabbitmqadmin -H 127.0.0.1 -P "$1" -u guest -p guest)
q="admin-q-$$"; x="admin-x-$$"
"${A[@]}" declare queue name="$q" durable=false >/dev/null
"${A[@]}" declare exchange name="$x" type=fanout durable=false >/dev/null
"${A[@]}" declare binding source="$x" destination="$q" >/dev/null
"${A[@]}" publish exchange="$x" routing_key=any payload="hello admin" >/dev/null
"${A[@]}" -f raw_json list queues name messages | python3 -c "
import json, sys
qs = {q['name']: q for q in json.load(sys.stdin)}
assert qs['$q']['messages'] == 1, qs.get('$q')"
"${A[@]}" -f raw_json get queue="$q" ackmode=ack_requeue_false | python3 -c "
import json, sys
m = json.load(sys.stdin)
assert m[0]['payload'] == 'hello admin' and m[0]['exchange'] == '$x', m"
"${A[@]}" -f raw_json list bindings source destination | python3 -c "
import json, sys
assert any(b['source'] == '$x' and b['destination'] == '$q' for b in json.load(sys.stdin))"
defs="$(mktemp)"
"${A[@]}" export "$defs" >/dev/null
python3 -c "import json, sys; assert 'queues' in json.load(open(sys.argv[1]))" "$defs"
rm -f "$defs"
"${A[@]}" delete queue name="$q" >/dev/null
"${A[@]}" delete exchange name="$x" >/dev/null
# Users, vhosts and permissions: what an operator's provisioning script does.
v="admin-v-$$"; u="admin-u-$$"
"${A[@]}" declare vhost name="$v" >/dev/null
"${A[@]}" declare user name="$u" password=s3cret tags=management >/dev/null
"${A[@]}" declare permission vhost="$v" user="$u" configure='^app' write='.*' read='.*' >/dev/null
"${A[@]}" -f raw_json list users | python3 -c "
import json, sys
us = {u['name']: u for u in json.load(sys.stdin)}
assert us['$u']['tags'] in (['management'], 'management'), us['$u']"
"${A[@]}" -f raw_json list permissions | python3 -c "
import json, sys
ps = [p for p in json.load(sys.stdin) if p['user'] == '$u']
assert ps == [{'user': '$u', 'vhost': '$v', 'configure': '^app', 'write': '.*', 'read': '.*'}], ps"
# The new user works: it sees its vhost and declares what its permissions allow.
U=(rabbitmqadmin -H 127.0.0.1 -P "$1" -u "$u" -p s3cret -V "$v")
"${U[@]}" declare queue name=app-q durable=false >/dev/null
if "${U[@]}" declare queue name=other-q durable=false >/dev/null 2>&1; then
    echo "configure permission not enforced" >&2; exit 1
fi
"${A[@]}" -f raw_json list vhosts name | python3 -c "
import json, sys
assert '$v' in [v['name'] for v in json.load(sys.stdin)]"
# A policy on the new vhost caps a queue that exists.
"${A[@]}" -V "$v" declare policy name=cap pattern='^app-' apply-to=queues \
    definition='{"max-length": 2}' >/dev/null
"${A[@]}" -f raw_json list policies | python3 -c "
import json, sys
ps = [p for p in json.load(sys.stdin) if p['vhost'] == '$v']
assert [(p['name'], p['definition']) for p in ps] == [('cap', {'max-length': 2})], ps"
for i in 1 2 3 4; do
    "${U[@]}" publish routing_key=app-q payload="m$i" >/dev/null
done
"${A[@]}" -V "$v" -f raw_json list queues name messages | python3 -c "
import json, sys
qs = {q['name']: q for q in json.load(sys.stdin)}
assert qs['app-q']['messages'] == 2, qs"
"${A[@]}" -V "$v" delete policy name=cap >/dev/null
# Runtime parameters: the vhost's limits as rabbitmqadmin sets them.
"${A[@]}" -V "$v" declare parameter component=vhost-limits name=limits \
    value='{"max-queues": 5}' >/dev/null
"${A[@]}" -f raw_json list parameters | python3 -c "
import json, sys
ps = [p for p in json.load(sys.stdin) if p['vhost'] == '$v']
assert [(p['component'], p['value']) for p in ps] == [('vhost-limits', {'max-queues': 5})], ps"
"${A[@]}" -V "$v" delete parameter component=vhost-limits name=limits >/dev/null
"${A[@]}" delete permission vhost="$v" user="$u" >/dev/null
"${A[@]}" delete user name="$u" >/dev/null
"${A[@]}" delete vhost name="$v" >/dev/null
"${A[@]}" -f raw_json list vhosts name | python3 -c "
import json, sys
assert '$v' not in [v['name'] for v in json.load(sys.stdin)]"
echo ok
