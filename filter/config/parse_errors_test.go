package config

import (
	"errors"
	"strings"
	"testing"
)

// Each case is a small file and the exact messages Parse must return for it,
// in order. The messages are the user interface of `sgswitch check`, so they
// are compared whole.
var errorCases = []struct {
	name string
	yaml string
	want []string
}{
	// YAML itself.
	{"syntax on first line", "a: b: c\n", []string{
		"x.yaml:1: invalid YAML: mapping values are not allowed in this context"}},
	{"syntax bad indentation", "instances:\n  - {name: a}\n - {name: b}\n", []string{
		"x.yaml:3: invalid YAML: did not find expected key"}},
	{"syntax unclosed flow", "switch:\n  conntrack: {max: 1\nuplink: {}\n", []string{
		"x.yaml:2: invalid YAML: did not find expected ',' or '}'"}},
	{"syntax tab", "switch:\n\tcontrol: /x\n", []string{
		"x.yaml:2: invalid YAML: found character that cannot start any token"}},
	{"unknown anchor", "switch: {}\ninstances: *vms\n", []string{
		"x.yaml:2: invalid YAML: unknown anchor 'vms' referenced"}},
	{"second document", "switch: {}\n---\nswitch: {}\n", []string{
		"x.yaml:2: a second YAML document; the configuration is one document"}},
	{"alias", "security-groups:\n  - &g {name: a}\ninstances: [*g]\n", []string{
		"x.yaml:3: instances[0]: YAML aliases (*g) are not supported; write the value out"}},
	{"top level list", "- a\n- b\n", []string{
		"x.yaml:1: want a mapping with fields switch, uplink, cluster, security-groups, instances, got a list"}},
	{"duplicate key", "switch: {}\nswitch: {}\n", []string{
		"x.yaml:2: switch: given twice (first at line 1)"}},

	// Unknown fields, at every level.
	{"unknown top field", "switches: {}\n", []string{
		"x.yaml:1: switches: unknown field; valid fields here are switch, uplink, cluster, security-groups, instances"}},
	{"unknown switch field", "switch:\n  conntrack-max: 5\n", []string{
		"x.yaml:2: switch.conntrack-max: unknown field; valid fields here are control, metrics, conntrack, persist-established, offload, queues, poll, uplink-macs, mac-ageing, dhcp"}},
	{"unknown conntrack field", "switch: {conntrack: {size: 5}}\n", []string{
		"x.yaml:1: switch.conntrack.size: unknown field; valid fields here are max, per-instance-max, timeouts"}},
	{"unknown poll field", "switch: {poll: {spin: 5}}\n", []string{
		"x.yaml:1: switch.poll.spin: unknown field; valid fields here are threads, spin-us"}},
	{"poll threads out of range", "switch:\n  poll: {threads: 17}\n", []string{
		"x.yaml:2: switch.poll.threads: 17 is out of range; give a number of poller threads from 1 to 16 (about one per core), or 0 for a worker goroutine per queue"}},
	{"poll spin out of range", "switch:\n  poll:\n    spin-us: 20000\n", []string{
		"x.yaml:3: switch.poll.spin-us: 20000 is out of range; give the longest busy-poll in microseconds from 0 (never spin) to 10000"}},
	{"unknown dhcp field", "switch:\n  dhcp: {router: 10.0.0.1}\n", []string{
		"x.yaml:2: switch.dhcp.router: unknown field; valid fields here are dns, lease-time"}},
	{"unknown uplink field", "uplink: {port: up0, gateway: 10.0.0.1/24, mac: x}\n", []string{
		"x.yaml:1: uplink.mac: unknown field; valid fields here are tap, port, netdev, gateway, lab-hosts"}},
	{"unknown group field", "security-groups:\n  - name: a\n    members: []\n", []string{
		"x.yaml:3: security-groups[0].members: unknown field; valid fields here are name, description, rules, external-sources"}},
	{"unknown rule field", "security-groups:\n  - name: a\n    rules:\n      - {flow-direction: ingress, protocol: tcp, port: 22, network: 0.0.0.0/0}\n", []string{
		"x.yaml:4: security-groups[0].rules[0].port: unknown field; valid fields here are flow-direction, protocol, network, security-group, start-port, end-port, icmp, description"}},
	{"unknown icmp field", "security-groups:\n- name: a\n  rules:\n  - {flow-direction: ingress, protocol: icmp, icmp: {typ: 8}, network: 0.0.0.0/0}\n", []string{
		"x.yaml:4: security-groups[0].rules[0].icmp.typ: unknown field; valid fields here are type, code"}},
	{"unknown instance field", "instances:\n  - {name: a, mac: \"02:00:00:00:00:01\", ipv4: 10.0.0.2/24, group: x}\n", []string{
		"x.yaml:2: instances[0].group: unknown field; valid fields here are name, host, tap, netdev, vhost-user, mac, ipv4, ipv6, security-groups, smtp-egress"}},

	// Wrong YAML types.
	{"bool wanted", "switch: {offload: yes}\n", []string{
		`x.yaml:1: switch.offload: want true or false, got "yes"`}},
	{"bool given nothing", "switch:\n  offload:\n", []string{
		"x.yaml:2: switch.offload: want true or false, got nothing"}},
	{"long value shortened", "switch: {persist-established: " + strings.Repeat("y", 50) + "}\n", []string{
		`x.yaml:1: switch.persist-established: want true or false, got "` + strings.Repeat("y", 40) + `..."`}},
	{"field name not a word", "switch:\n  ? [a, b]\n  : 1\n", []string{
		"x.yaml:2: switch: a field name must be a plain word, got a list"}},
	{"integer wanted", "switch:\n  conntrack: {max: lots}\n", []string{
		`x.yaml:2: switch.conntrack.max: want an integer, got "lots"`}},
	{"quoted integer", "security-groups:\n- name: a\n  rules:\n  - {flow-direction: ingress, protocol: tcp, start-port: \"22\", end-port: 22, network: 0.0.0.0/0}\n", []string{
		`x.yaml:4: security-groups[0].rules[0].start-port: want an integer, got "22"`}},
	{"list wanted", "instances: {name: a}\n", []string{
		"x.yaml:1: instances: want a list of instances, got a mapping"}},
	{"mapping wanted", "security-groups: [web]\n", []string{
		`x.yaml:1: security-groups[0]: want a mapping with fields name, description, rules, external-sources, got "web"`}},
	{"string wanted", "security-groups:\n  - name: [a, b]\n", []string{
		"x.yaml:2: security-groups[0].name: want a string, got a list"}},
	{"group list wanted", "instances:\n  - {name: a, mac: \"02:00:00:00:00:01\", ipv4: 10.0.0.2/24, security-groups: web}\n", []string{
		`x.yaml:2: instances[0].security-groups: want a list of group names, got "web"`}},

	// The switch section.
	{"control empty", "switch: {control: \"\"}\n", []string{
		"x.yaml:1: switch.control: must not be empty; give the control socket's path, or omit the field for /run/sgswitch/control.sock"}},
	{"control too long", "switch: {control: /" + strings.Repeat("s", 107) + "}\n", []string{
		"x.yaml:1: switch.control: is 108 bytes long; a unix socket path is at most 107 bytes"}},
	{"metrics bad", "switch: {metrics: localhost}\n", []string{
		`x.yaml:1: switch.metrics: "localhost" is not a listen address; want host:port like 127.0.0.1:9464, or "" for no metrics`}},
	{"unknown conntrack timeout", "switch: {conntrack: {timeouts: {tcp-syn: 5}}}\n", []string{
		"x.yaml:1: switch.conntrack.timeouts.tcp-syn: unknown field; valid fields here are tcp-syn-sent, tcp-syn-recv, tcp-established, tcp-fin-wait, tcp-close-wait, tcp-last-ack, tcp-time-wait, tcp-close, udp-unreplied, udp-replied, icmp, other"}},
	{"conntrack timeout zero", "switch: {conntrack: {timeouts: {icmp: 0}}}\n", []string{
		"x.yaml:1: switch.conntrack.timeouts.icmp: 0 is out of range; give a number of seconds from 1 to 4294967295"}},
	{"conntrack max zero", "switch: {conntrack: {max: 0}}\n", []string{
		"x.yaml:1: switch.conntrack.max: 0 is out of range; give a number from 1 to 2147483647"}},
	{"uplink-macs huge", "switch: {uplink-macs: 99999999999999999999999}\n", []string{
		"x.yaml:1: switch.uplink-macs: 99999999999999999999999 is out of range; give a number from 1 to 2147483647"}},
	{"mac-ageing zero", "switch: {mac-ageing: 0}\n", []string{
		"x.yaml:1: switch.mac-ageing: 0 is out of range; give a number of seconds from 1 to 4294967295"}},
	{"lease-time too long", "switch: {dhcp: {lease-time: 4294967296}}\n", []string{
		"x.yaml:1: switch.dhcp.lease-time: 4294967296 is out of range; give a number of seconds from 1 to 4294967295"}},
	{"dns not ipv4", "switch:\n  dhcp:\n    dns: [192.0.2.53, 2001:db8::53, dns.example]\n", []string{
		"x.yaml:3: switch.dhcp.dns[1]: 2001:db8::53 is not an IPv4 address; DHCPv4 hands out IPv4 DNS servers only",
		`x.yaml:3: switch.dhcp.dns[2]: "dns.example" is not an IP address; want e.g. 192.0.2.80 or 2001:db8::80`}},

	// The uplink.
	{"uplink missing fields", "uplink: {}\n", []string{
		"x.yaml:1: uplink.tap: missing; give the uplink's device: tap: NAME (a TAP the switch opens) or netdev: NAME (an existing device: a NIC, a bond, a VXLAN device, a veth end)",
		"x.yaml:1: uplink.gateway: missing; give the gateway's address with its on-link prefix, e.g. 10.0.0.1/24"}},
	{"uplink bad port", "uplink: {port: uplink/0, gateway: 10.0.0.1/24}\n", []string{
		`x.yaml:1: uplink.port: "uplink/0" is not a valid interface name; an interface name is 1-15 bytes without '/', ':' or white space`}},
	{"gateway without prefix", "uplink:\n  port: up0\n  gateway: 10.0.0.1\n", []string{
		`x.yaml:3: uplink.gateway: "10.0.0.1" is not an address with its on-link prefix; want an IPv4 address like 10.0.0.1/24`}},
	{"gateway ipv6", "uplink:\n  port: up0\n  gateway: 2001:db8::1/64\n", []string{
		"x.yaml:3: uplink.gateway: 2001:db8::1/64 is not an IPv4 address; want e.g. 10.0.0.1/24"}},
	{"gateway network address", "uplink:\n  port: up0\n  gateway: 10.0.0.0/24\n", []string{
		"x.yaml:3: uplink.gateway: 10.0.0.0 is the network address of 10.0.0.0/24; give the host's own address, e.g. 10.0.0.1/24"}},
	{"lab host bad", "uplink:\n  port: up0\n  gateway: 10.0.0.1/24\n  lab-hosts: [198.51.100.0/24, 224.0.0.1]\n", []string{
		`x.yaml:4: uplink.lab-hosts[0]: "198.51.100.0/24" is not an IP address; want e.g. 192.0.2.80 or 2001:db8::80`,
		"x.yaml:4: uplink.lab-hosts[1]: 224.0.0.1 is not a unicast address"}},
	{"lab host is the gateway", "uplink:\n  port: up0\n  gateway: 10.0.0.1/24\n  lab-hosts:\n    - 10.0.0.1\n", []string{
		"x.yaml:5: uplink.lab-hosts[0]: 10.0.0.1 is already used by uplink.gateway (line 3)"}},

	// Security groups.
	{"group without name", "security-groups:\n  - description: nameless\n", []string{
		"x.yaml:2: security-groups[0].name: missing; every security group needs a name"}},
	{"group bad name", "security-groups:\n  - name: web servers\n", []string{
		`x.yaml:2: security-groups[0].name: "web servers" is not a valid group name; a name is 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit`}},
	{"group duplicate name", "security-groups:\n  - name: web\n  - name: db\n  - name: web\n", []string{
		`x.yaml:4: security-groups[2].name: "web" is already used by security-groups[0].name (line 2)`}},
	{"group description too long", "security-groups:\n  - name: a\n    description: " + strings.Repeat("é", 256) + "\n", []string{
		"x.yaml:3: security-groups[0].description: is 256 characters long; a description is at most 255"}},
	{"external source bad", "security-groups:\n  - name: a\n    external-sources: [203.0.113.0/33, 10.0.0.0/8, 10.1.2.3/8]\n", []string{
		`x.yaml:3: security-groups[0].external-sources[0]: "203.0.113.0/33" is not a CIDR; want e.g. 10.0.0.0/24, 2001:db8::/32 or a single address`,
		"x.yaml:3: security-groups[0].external-sources[2]: 10.0.0.0/8 is already listed as external-sources[1] (line 3)"}},

	// Rules.
	{"rule missing direction and protocol", "security-groups:\n- name: a\n  rules:\n  - {network: 0.0.0.0/0}\n", []string{
		"x.yaml:4: security-groups[0].rules[0].flow-direction: missing; one of ingress, egress",
		"x.yaml:4: security-groups[0].rules[0].protocol: missing; one of tcp, udp, icmp, icmpv6, ah, esp, gre, ipip, all"}},
	{"rule unknown direction", "security-groups:\n- name: a\n  rules:\n  - {flow-direction: inbound, protocol: tcp, network: 0.0.0.0/0}\n", []string{
		`x.yaml:4: security-groups[0].rules[0].flow-direction: unknown flow-direction "inbound"; valid: ingress, egress`}},
	{"rule unknown protocol", "security-groups:\n- name: a\n  rules:\n  - {flow-direction: ingress, protocol: sctp, network: 0.0.0.0/0}\n", []string{
		`x.yaml:4: security-groups[0].rules[0].protocol: unknown protocol "sctp"; valid: tcp, udp, icmp, icmpv6, ah, esp, gre, ipip, all`}},
	{"rule both peers", "security-groups:\n- name: a\n  rules:\n  - {flow-direction: ingress, protocol: tcp, network: 0.0.0.0/0, security-group: a}\n", []string{
		"x.yaml:4: security-groups[0].rules[0]: set exactly one of network and security-group"}},
	{"rule no peer", "security-groups:\n- name: a\n  rules:\n  - flow-direction: ingress\n    protocol: tcp\n", []string{
		"x.yaml:4: security-groups[0].rules[0]: set exactly one of network and security-group"}},
	{"rule bad network", "security-groups:\n- name: a\n  rules:\n  - {flow-direction: ingress, protocol: tcp, network: 10.0.0.300/24}\n", []string{
		`x.yaml:4: security-groups[0].rules[0].network: "10.0.0.300/24" is not a CIDR; want e.g. 10.0.0.0/24, 2001:db8::/32 or a single address`}},
	{"rule zoned address", "security-groups:\n- name: a\n  rules:\n  - {flow-direction: ingress, protocol: tcp, network: \"fe80::1%eth0\"}\n", []string{
		`x.yaml:4: security-groups[0].rules[0].network: "fe80::1%eth0" is not a CIDR; want e.g. 10.0.0.0/24, 2001:db8::/32 or a single address`}},
	{"rule missing group", "security-groups:\n- name: a\n  rules:\n  - {flow-direction: ingress, protocol: tcp, security-group: mgmt}\n- name: b\n", []string{
		`x.yaml:4: security-groups[0].rules[0].security-group: no group named "mgmt"; defined groups are a, b, default`}},
	{"rule empty group", "security-groups:\n- name: a\n  rules:\n  - {flow-direction: ingress, protocol: tcp, security-group: \"\"}\n", []string{
		"x.yaml:4: security-groups[0].rules[0].security-group: must not be empty; give the name of the peer group"}},
	{"port out of range", "security-groups:\n- name: a\n  rules:\n  - flow-direction: ingress\n    protocol: tcp\n    start-port: 70000\n    end-port: 70000\n    network: 0.0.0.0/0\n", []string{
		"x.yaml:6: security-groups[0].rules[0].start-port: 70000 is out of range; a port is 1-65535",
		"x.yaml:7: security-groups[0].rules[0].end-port: 70000 is out of range; a port is 1-65535"}},
	{"port zero", "security-groups:\n- name: a\n  rules:\n  - {flow-direction: ingress, protocol: udp, start-port: 0, end-port: 53, network: 0.0.0.0/0}\n", []string{
		"x.yaml:4: security-groups[0].rules[0].start-port: 0 is out of range; a port is 1-65535"}},
	{"start after end", "security-groups:\n- name: a\n  rules:\n  - {flow-direction: ingress, protocol: tcp, start-port: 90, end-port: 80, network: 0.0.0.0/0}\n", []string{
		"x.yaml:4: security-groups[0].rules[0].start-port: 90 is greater than end-port 80; start-port must be <= end-port"}},
	{"start without end", "security-groups:\n- name: a\n  rules:\n  - {flow-direction: ingress, protocol: tcp, start-port: 22, network: 0.0.0.0/0}\n", []string{
		"x.yaml:4: security-groups[0].rules[0].start-port: given without end-port; set both start-port and end-port (the same value for a single port), or neither for all ports"}},
	{"end without start", "security-groups:\n- name: a\n  rules:\n  - {flow-direction: ingress, protocol: tcp, end-port: 22, network: 0.0.0.0/0}\n", []string{
		"x.yaml:4: security-groups[0].rules[0].end-port: given without start-port; set both start-port and end-port (the same value for a single port), or neither for all ports"}},
	{"ports on icmp", "security-groups:\n- name: a\n  rules:\n  - {flow-direction: ingress, protocol: icmp, start-port: 8, end-port: 8, network: 0.0.0.0/0}\n", []string{
		"x.yaml:4: security-groups[0].rules[0].start-port: ports apply to tcp and udp only, not to protocol icmp"}},
	{"ports on all", "security-groups:\n- name: a\n  rules:\n  - {flow-direction: egress, protocol: all, end-port: 80, network: 0.0.0.0/0}\n", []string{
		"x.yaml:4: security-groups[0].rules[0].end-port: ports apply to tcp and udp only, not to protocol all"}},
	{"icmp on tcp", "security-groups:\n- name: a\n  rules:\n  - {flow-direction: ingress, protocol: tcp, icmp: {type: 8}, network: 0.0.0.0/0}\n", []string{
		"x.yaml:4: security-groups[0].rules[0].icmp: icmp applies to protocols icmp and icmpv6 only, not to tcp"}},
	{"icmp on all", "security-groups:\n- name: a\n  rules:\n  - {flow-direction: ingress, protocol: all, icmp: {type: 8}, network: 0.0.0.0/0}\n", []string{
		"x.yaml:4: security-groups[0].rules[0].icmp: icmp applies to protocols icmp and icmpv6 only, not to all"}},
	{"icmp type and code out of range", "security-groups:\n- name: a\n  rules:\n  - flow-direction: ingress\n    protocol: icmp\n    icmp:\n      type: 256\n      code: -2\n    network: 0.0.0.0/0\n", []string{
		"x.yaml:7: security-groups[0].rules[0].icmp.type: 256 is out of range; an ICMP type is 0-255, or -1 for any",
		"x.yaml:8: security-groups[0].rules[0].icmp.code: -2 is out of range; an ICMP code is 0-255, or -1 for any"}},
	{"icmp code without type", "security-groups:\n- name: a\n  rules:\n  - {flow-direction: ingress, protocol: icmp, icmp: {code: 0}, network: 0.0.0.0/0}\n", []string{
		"x.yaml:4: security-groups[0].rules[0].icmp.code: a code needs a type; set icmp.type too, or drop the code to match any code"}},
	{"icmp code with any type", "security-groups:\n- name: a\n  rules:\n  - {flow-direction: ingress, protocol: icmpv6, icmp: {type: -1, code: 4}, network: \"::/0\"}\n", []string{
		"x.yaml:4: security-groups[0].rules[0].icmp.code: a code needs a type; set icmp.type too, or drop the code to match any code"}},
	{"icmp with ipv6 network", "security-groups:\n- name: a\n  rules:\n  - {flow-direction: ingress, protocol: icmp, network: \"2001:db8::/32\"}\n", []string{
		"x.yaml:4: security-groups[0].rules[0].network: 2001:db8::/32 is an IPv6 network but protocol icmp is ICMP for IPv4; use icmpv6"}},
	{"icmpv6 with ipv4 network", "security-groups:\n- name: a\n  rules:\n  - {flow-direction: ingress, protocol: icmpv6, network: 10.0.0.0/8}\n", []string{
		"x.yaml:4: security-groups[0].rules[0].network: 10.0.0.0/8 is an IPv4 network but protocol icmpv6 is ICMP for IPv6; use icmp"}},
	{"rule description too long", "security-groups:\n- name: a\n  rules:\n  - {flow-direction: ingress, protocol: tcp, network: 0.0.0.0/0, description: " + strings.Repeat("x", 300) + "}\n", []string{
		"x.yaml:4: security-groups[0].rules[0].description: is 300 characters long; a description is at most 255"}},
	{"duplicate rule after canonicalisation", "security-groups:\n- name: a\n  rules:\n  - {flow-direction: ingress, protocol: tcp, network: 10.0.0.0/24}\n  - {flow-direction: ingress, protocol: udp, network: 10.0.0.0/24}\n  - {flow-direction: ingress, protocol: tcp, start-port: 1, end-port: 65535, network: 10.0.0.18/24, description: again}\n", []string{
		"x.yaml:6: security-groups[0].rules[2]: same rule as rules[0] (line 4); a group cannot hold two identical rules"}},

	// Instances.
	{"instance missing fields", "instances:\n  - {tap: t0}\n", []string{
		"x.yaml:2: instances[0].name: missing; every instance needs a name",
		`x.yaml:2: instances[0].mac: missing; give the instance's MAC address, e.g. "02:00:00:00:00:11"`,
		"x.yaml:2: instances[0].ipv4: missing; give the instance's IPv4 address with its on-link prefix, e.g. 10.0.0.11/24"}},
	{"instance bad name", "instances:\n  - {name: -web, mac: \"02:00:00:00:00:01\", ipv4: 10.0.0.2/24}\n", []string{
		`x.yaml:2: instances[0].name: "-web" is not a valid instance name; a name is 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit`}},
	{"instance reserved name", "instances:\n  - {name: uplink, tap: vm0, mac: \"02:00:00:00:00:01\", ipv4: 10.0.0.2/24}\n", []string{
		`x.yaml:2: instances[0].name: "uplink" is reserved (names that cannot be instances: uplink, internet)`}},
	{"instance name too long for a tap", "instances:\n  - {name: a-very-long-instance, mac: \"02:00:00:00:00:01\", ipv4: 10.0.0.2/24}\n", []string{
		`x.yaml:2: instances[0].tap: the default TAP name (the instance name) is not usable: "a-very-long-instance" is not a valid interface name; an interface name is 1-15 bytes without '/', ':' or white space; set tap`}},
	{"instance bad tap", "instances:\n  - {name: a, tap: \"tap 0\", mac: \"02:00:00:00:00:01\", ipv4: 10.0.0.2/24}\n", []string{
		`x.yaml:2: instances[0].tap: "tap 0" is not a valid interface name; an interface name is 1-15 bytes without '/', ':' or white space`}},
	{"instance tap and netdev", "instances:\n  - {name: a, tap: t0,\n     netdev: vnet0, mac: \"02:00:00:00:00:01\", ipv4: 10.0.0.2/24}\n", []string{
		`x.yaml:3: instances[0].netdev: an instance has one port; give either tap (a TAP the switch opens) or netdev (an existing device someone else made, such as the TAP of a QEMU VM), not both`}},
	{"instance bad netdev", "instances:\n  - {name: a, netdev: \"vnet/0\", mac: \"02:00:00:00:00:01\", ipv4: 10.0.0.2/24}\n", []string{
		`x.yaml:2: instances[0].netdev: "vnet/0" is not a valid interface name; an interface name is 1-15 bytes without '/', ':' or white space`}},
	{"netdev used twice", "uplink: {netdev: eth1, gateway: 10.0.0.1/24}\ninstances:\n  - {name: a, netdev: vnet0, mac: \"02:00:00:00:00:01\", ipv4: 10.0.0.2/24}\n  - {name: b, tap: vnet0, mac: \"02:00:00:00:00:02\", ipv4: 10.0.0.3/24}\n  - {name: c, netdev: eth1, mac: \"02:00:00:00:00:03\", ipv4: 10.0.0.4/24}\n", []string{
		`x.yaml:4: instances[1].tap: "vnet0" is already used by instances[0].netdev (line 3)`,
		`x.yaml:5: instances[2].netdev: "eth1" is already used by uplink.netdev (line 1)`}},
	{"uplink two devices", "uplink:\n  port: up0\n  netdev: eth1\n  gateway: 10.0.0.1/24\n", []string{
		`x.yaml:3: uplink.netdev: the uplink has one device; give only one of tap (old name: port) and netdev, not port and netdev`}},
	{"mac not a mac", "instances:\n  - {name: a, mac: \"02:00:00:00:00\", ipv4: 10.0.0.2/24}\n", []string{
		`x.yaml:2: instances[0].mac: "02:00:00:00:00" is not a MAC address; want 6 bytes like "02:00:00:00:00:11"`}},
	{"mac too long", "instances:\n  - {name: a, mac: \"02:00:00:00:00:00:00:01\", ipv4: 10.0.0.2/24}\n", []string{
		`x.yaml:2: instances[0].mac: "02:00:00:00:00:00:00:01" is 8 bytes; an Ethernet MAC address is 6 bytes, like "02:00:00:00:00:11"`}},
	{"mac multicast", "instances:\n  - {name: a, mac: \"01:00:5e:00:00:01\", ipv4: 10.0.0.2/24}\n", []string{
		"x.yaml:2: instances[0].mac: 01:00:5e:00:00:01 is a multicast or broadcast address; an instance's MAC must be unicast (lowest bit of the first byte clear)"}},
	{"mac broadcast", "instances:\n  - {name: a, mac: \"ff:ff:ff:ff:ff:ff\", ipv4: 10.0.0.2/24}\n", []string{
		"x.yaml:2: instances[0].mac: ff:ff:ff:ff:ff:ff is a multicast or broadcast address; an instance's MAC must be unicast (lowest bit of the first byte clear)"}},
	{"mac zero", "instances:\n  - {name: a, mac: \"00:00:00:00:00:00\", ipv4: 10.0.0.2/24}\n", []string{
		"x.yaml:2: instances[0].mac: 00:00:00:00:00:00 is the all-zero address; give the instance's own MAC"}},
	{"ipv4 is ipv6", "instances:\n  - {name: a, mac: \"02:00:00:00:00:01\", ipv4: \"2001:db8::2/64\"}\n", []string{
		"x.yaml:2: instances[0].ipv4: 2001:db8::2/64 is not an IPv4 address; want e.g. 10.0.0.11/24"}},
	{"ipv4 without prefix", "instances:\n  - {name: a, mac: \"02:00:00:00:00:01\", ipv4: 10.0.0.2}\n", []string{
		`x.yaml:2: instances[0].ipv4: "10.0.0.2" is not an address with its on-link prefix; want an IPv4 address like 10.0.0.11/24`}},
	{"ipv4 broadcast", "instances:\n  - {name: a, mac: \"02:00:00:00:00:01\", ipv4: 10.0.0.255/24}\n", []string{
		"x.yaml:2: instances[0].ipv4: 10.0.0.255 is the broadcast address of 10.0.0.0/24; give the host's own address, e.g. 10.0.0.11/24"}},
	{"ipv4 loopback", "instances:\n  - {name: a, mac: \"02:00:00:00:00:01\", ipv4: 127.0.0.2/8}\n", []string{
		"x.yaml:2: instances[0].ipv4: 127.0.0.2 is not a unicast address"}},
	{"ipv6 is ipv4", "instances:\n  - {name: a, mac: \"02:00:00:00:00:01\", ipv4: 10.0.0.2/24, ipv6: 10.0.0.2/24}\n", []string{
		"x.yaml:2: instances[0].ipv6: 10.0.0.2/24 is not an IPv6 address; want e.g. 2001:db8::11/64"}},
	{"ipv6 is ipv4-mapped", "instances:\n  - {name: a, mac: \"02:00:00:00:00:01\", ipv4: 10.0.0.2/24, ipv6: \"::ffff:10.0.0.3/120\"}\n", []string{
		"x.yaml:2: instances[0].ipv6: ::ffff:10.0.0.3/120 is not an IPv6 address; want e.g. 2001:db8::11/64"}},
	{"ipv6 subnet address", "instances:\n  - {name: a, mac: \"02:00:00:00:00:01\", ipv4: 10.0.0.2/24, ipv6: \"2001:db8::/64\"}\n", []string{
		"x.yaml:2: instances[0].ipv6: 2001:db8:: is the network address of 2001:db8::/64; give the host's own address, e.g. 2001:db8::11/64"}},
	{"empty group list", "instances:\n  - name: a\n    mac: \"02:00:00:00:00:01\"\n    ipv4: 10.0.0.2/24\n    security-groups: []\n", []string{
		`x.yaml:5: instances[0].security-groups: must name at least one group (omit the field to use "default")`}},
	{"null group list", "instances:\n  - name: a\n    mac: \"02:00:00:00:00:01\"\n    ipv4: 10.0.0.2/24\n    security-groups:\n", []string{
		`x.yaml:5: instances[0].security-groups: must name at least one group (omit the field to use "default")`}},
	{"unknown group", "security-groups: [{name: web}]\ninstances:\n  - {name: a, mac: \"02:00:00:00:00:01\", ipv4: 10.0.0.2/24, security-groups: [web, db]}\n", []string{
		`x.yaml:3: instances[0].security-groups[1]: no group named "db"; defined groups are web, default`}},
	{"group listed twice", "instances:\n  - {name: a, mac: \"02:00:00:00:00:01\", ipv4: 10.0.0.2/24, security-groups: [default, default]}\n", []string{
		`x.yaml:2: instances[0].security-groups[1]: "default" is already listed as security-groups[0]`}},
	{"smtp-egress not bool", "instances:\n  - {name: a, mac: \"02:00:00:00:00:01\", ipv4: 10.0.0.2/24, smtp-egress: 1}\n", []string{
		`x.yaml:2: instances[0].smtp-egress: want true or false, got "1"`}},
	{"duplicates between instances", `instances:
  - {name: a, mac: "02:00:00:00:00:01", ipv4: 10.0.0.2/24, ipv6: "2001:db8::2/64"}
  - name: a
    tap: b
    mac: "02:00:00:00:00:01"
    ipv4: 10.0.0.2/16
    ipv6: "2001:db8::2/48"
  - {name: b, mac: "02-00-00-00-00-01", ipv4: 10.0.0.4/24}
`, []string{
		`x.yaml:3: instances[1].name: "a" is already used by instances[0].name (line 2)`,
		"x.yaml:5: instances[1].mac: 02:00:00:00:00:01 is already used by instances[0].mac (line 2)",
		"x.yaml:6: instances[1].ipv4: 10.0.0.2 is already used by instances[0].ipv4 (line 2)",
		"x.yaml:7: instances[1].ipv6: 2001:db8::2 is already used by instances[0].ipv6 (line 2)",
		`x.yaml:8: instances[2].tap: "b" (the default TAP name, from name) is already used by instances[1].tap (line 4)`,
		"x.yaml:8: instances[2].mac: 02:00:00:00:00:01 is already used by instances[0].mac (line 2)"}},
	{"instance uses the uplink's port and gateway", `uplink:
  port: up0
  gateway: 10.0.0.1/24
instances:
  - {name: a, tap: up0, mac: "02:00:00:00:00:01", ipv4: 10.0.0.1/24}
`, []string{
		`x.yaml:5: instances[0].tap: "up0" is already used by uplink.port (line 2)`,
		"x.yaml:5: instances[0].ipv4: 10.0.0.1 is already used by uplink.gateway (line 3)"}},

	// Everything is reported, in line order, not just the first problem.
	{"all errors collected", `instances:
  - {name: a, mac: "02:00:00:00:00:01", ipv4: 10.0.0.2/24, security-groups: [nope]}
security-groups:
  - name: a
    rules:
      - {flow-direction: sideways, protocol: tcp, network: 0.0.0.0/0}
switch: {offload: 1}
`, []string{
		`x.yaml:2: instances[0].security-groups[0]: no group named "nope"; defined groups are a, default`,
		`x.yaml:6: security-groups[0].rules[0].flow-direction: unknown flow-direction "sideways"; valid: ingress, egress`,
		`x.yaml:7: switch.offload: want true or false, got "1"`}},
	// The cluster section and instances' hosts (SPEC §9).
	{"host without cluster", "instances:\n  - {name: a, host: hv-a, mac: \"02:00:00:00:00:11\", ipv4: 10.0.0.11/24}\n", []string{
		"x.yaml:2: instances[0].host: only in a cluster: without a cluster: section every instance runs on this switch; remove host or add cluster:"}},
	{"cluster instance without host", "cluster: {host: hv-a, etcd: {endpoints: [http://127.0.0.1:2379]}}\ninstances:\n  - {name: a, mac: \"02:00:00:00:00:11\", ipv4: 10.0.0.11/24}\n", []string{
		"x.yaml:3: instances[0].host: missing; in a cluster every instance names the host it runs on, e.g. host: hv-a"}},
	{"cluster without etcd", "cluster: {host: hv-a}\n", []string{
		"x.yaml:1: cluster.etcd: missing; give the etcd cluster, e.g. etcd: {endpoints: [http://10.0.0.2:2379]}"}},
	{"cluster bad fields", "cluster:\n  host: \"hv a\"\n  etcd:\n    endpoints: [\"127.0.0.1:2379\", http://x:1/v2]\n    prefix: sgswitch/\n    tls: {ca: /nonexistent/ca.pem}\n", []string{
		"x.yaml:2: cluster.host: a host name holds letters, digits, '.', '-' and '_' only",
		"x.yaml:4: cluster.etcd.endpoints[0]: \"127.0.0.1:2379\" is not an etcd client URL; write scheme://host:port, e.g. http://10.0.0.2:2379",
		"x.yaml:4: cluster.etcd.endpoints[1]: \"http://x:1/v2\" is not an etcd client URL; write scheme://host:port, e.g. http://10.0.0.2:2379",
		"x.yaml:5: cluster.etcd.prefix: \"sgswitch/\": a key prefix starts with / and does not end with one, e.g. /sgswitch",
		"x.yaml:6: cluster.etcd.tls.ca: \"/nonexistent/ca.pem\": stat /nonexistent/ca.pem: no such file or directory; give a readable PEM file",
		"x.yaml:6: cluster.etcd.tls.cert: missing; tls needs ca, cert and key (PEM files)",
		"x.yaml:6: cluster.etcd.tls.key: missing; tls needs ca, cert and key (PEM files)"}},
	{"same tap on one host", "cluster: {host: hv-a, etcd: {endpoints: [http://127.0.0.1:2379]}}\ninstances:\n  - {name: a, host: hv-a, tap: t1, mac: \"02:00:00:00:00:11\", ipv4: 10.0.0.11/24}\n  - {name: b, host: hv-b, tap: t1, mac: \"02:00:00:00:00:12\", ipv4: 10.0.0.12/24}\n  - {name: c, host: hv-a, tap: t1, mac: \"02:00:00:00:00:13\", ipv4: 10.0.0.13/24}\n", []string{
		"x.yaml:5: instances[2].tap: \"t1\" is already used by instances[0].tap (line 3)"}},
}

func TestParseErrors(t *testing.T) {
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("x.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatalf("Parse succeeded, want errors:\n%s", strings.Join(tc.want, "\n"))
			}
			if c != nil {
				t.Errorf("Parse returned a config along with errors")
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want Errors", err)
			}
			if got, want := err.Error(), strings.Join(tc.want, "\n"); got != want {
				t.Errorf("errors:\n got: %s\nwant: %s", strings.ReplaceAll(got, "\n", "\n      "), strings.ReplaceAll(want, "\n", "\n      "))
			}
			for _, e := range errs {
				if e.File != "x.yaml" || e.Line < 1 {
					t.Errorf("error %q: File=%q Line=%d, want x.yaml and a line", e.Msg, e.File, e.Line)
				}
			}
		})
	}
}
