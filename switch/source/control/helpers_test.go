package control

import (
	"net/netip"

	ft "github.com/sgswitch/sgswitch/filter/framegen"
)

// testConfig is the switch the control API tests change: two groups, two
// instances and the uplink (the datapath's tests use the same one).
const testConfig = `
switch:
  dhcp: {dns: [10.0.0.53], lease-time: 3600}
uplink: {port: up0, gateway: 10.0.0.1/24}
security-groups:
  - name: web
    rules:
      - {flow-direction: ingress, protocol: tcp, start-port: 80, end-port: 80, network: 0.0.0.0/0}
      - {flow-direction: ingress, protocol: icmp, icmp: {type: 8}, network: 0.0.0.0/0}
  - name: db
    rules:
      - {flow-direction: ingress, protocol: tcp, start-port: 3306, end-port: 3306, security-group: web}
      - {flow-direction: egress, protocol: tcp, start-port: 443, end-port: 443, network: 0.0.0.0/0}
instances:
  - {name: web1, mac: "02:00:00:00:00:11", ipv4: 10.0.0.11/24, ipv6: "fd00::11/64", security-groups: [web]}
  - {name: db1, mac: "02:00:00:00:00:21", ipv4: 10.0.0.21/24, security-groups: [db]}
`

var (
	web1    = ft.Host{MAC: ft.MustMAC("02:00:00:00:00:11"), IP: netip.MustParseAddr("10.0.0.11")}
	db1     = ft.Host{MAC: ft.MustMAC("02:00:00:00:00:21"), IP: netip.MustParseAddr("10.0.0.21")}
	outside = ft.Host{MAC: ft.MustMAC("02:00:00:00:00:01"), IP: netip.MustParseAddr("203.0.113.5")}
)

// Port ids of testConfig: its instances in file order, then the uplink.
const (
	pWeb1   = 0
	pDB1    = 1
	pUplink = 2
)
