#!/usr/bin/python3
"""Checks config/vpcfw.schema.json: every example config conforms to it, and
configs with shape errors (unknown keys, wrong types) are rejected by it, as
they are by vpcfw itself. Usage: check_schema.py SOURCE_DIR"""
import glob
import json
import sys

import jsonschema
import yaml

src = sys.argv[1]
schema = json.load(open(f"{src}/config/vpcfw.schema.json"))
jsonschema.Draft7Validator.check_schema(schema)
validator = jsonschema.Draft7Validator(schema)

failures = 0
examples = sorted(glob.glob(f"{src}/config/examples/*.yaml")) + sorted(glob.glob(f"{src}/tests/golden/*.yaml"))
assert examples, "no examples found"
for path in examples:
    errors = list(validator.iter_errors(yaml.safe_load(open(path)) or {}))
    for e in errors:
        print(f"{path}: {'/'.join(map(str, e.path))}: {e.message}")
    failures += bool(errors)

# Shape errors the schema must catch (vpcfw reports the same ones with positions).
bad = {
    "unknown key": "vpcs: [{name: v, cidr: 10.0.0.0/16, cdir: x}]",
    "missing cidr": "vpcs: [{name: v}]",
    "bad action": "network_acls: [{name: a, vpc: v, ingress: [{rule: 1, protocol: tcp, cidr: 0.0.0.0/0, action: permit}]}]",
    "rule number": "network_acls: [{name: a, vpc: v, ingress: [{rule: 32767, protocol: tcp, cidr: 0.0.0.0/0, action: allow}]}]",
    "two peers": "security_groups: [{name: g, vpc: v, ingress: [{protocol: tcp, cidr: 0.0.0.0/0, group: g}]}]",
    "no peer": "security_groups: [{name: g, vpc: v, ingress: [{protocol: tcp}]}]",
    "netns and host": "instances: [{name: i, subnet: s, private_ip: 10.0.0.4, netns: x, host: h, interface: e}]",
    "routed not a boolean": "instances: [{name: i, subnet: s, private_ip: 10.0.0.4, host: h, interface: e, routed: 'yes please'}]",
    "routed without host": "instances: [{name: i, subnet: s, private_ip: 10.0.0.4, routed: true}]",
    "bad name": "vpcs: [{name: 'a b', cidr: 10.0.0.0/16}]",
    "unknown top-level key": "vpc: []",
    "flow log without a resource": "flow_logs: [{name: f, destination: stdout}]",
    "flow log with two resources": "flow_logs: [{name: f, vpc: v, subnet: s, destination: stdout}]",
    "flow log traffic type": "flow_logs: [{name: f, vpc: v, traffic_type: accept, destination: stdout}]",
    "flow log format": "flow_logs: [{name: f, vpc: v, log_format: 'srcaddr dstaddr', destination: stdout}]",
    "flow log destination": "flow_logs: [{name: f, vpc: v, destination: {files: /a, streams: /b}}]",
    "flow log relative path": "flow_logs: [{name: f, vpc: v, destination: {files: a/b}}]",
    "flow log account": "flow_logs: [{name: f, vpc: v, account_id: '12345', destination: stdout}]",
    "region": "region: US_EAST_1",
}
for what, text in bad.items():
    if validator.is_valid(yaml.safe_load(text)):
        print(f"schema accepts a config with {what}: {text}")
        failures += 1

print(f"schema: {len(examples)} examples, {len(bad)} bad shapes checked, {failures} failures")
sys.exit(1 if failures else 0)
