package config

import (
	"strings"
	"testing"
)

// The instances' holder constants name the fields their messages print.
func TestHolderFields(t *testing.T) {
	for f, want := range map[uint8]string{hName: "instances[7].name", hTAP: "instances[7].tap", hNetdev: "instances[7].netdev",
		hMAC: "instances[7].mac", hIPv4: "instances[7].ipv4", hIPv6: "instances[7].ipv6"} {
		if got := (holder{7, f}).String(); got != want {
			t.Errorf("holder %d is %s, want %s", f, got, want)
		}
	}
	if got := hold("uplink.lab-hosts", "", 2).String(); got != "uplink.lab-hosts[2]" {
		t.Errorf("lab host holder is %s", got)
	}
}

// Entries decoded one by one and assembled give what Parse of one file
// gives, and the checks across entries name the fields as the file's.
func TestAssembleMatchesParse(t *testing.T) {
	head := "cluster: {host: hv-a, etcd: {endpoints: [http://127.0.0.1:2379]}}\nuplink: {port: up0, gateway: 10.0.0.1/24}\n"
	groups := []string{"name: web\nrules:\n  - {flow-direction: ingress, protocol: tcp, start-port: 80, end-port: 80, security-group: web}\n", "name: ops\n"}
	instances := []string{
		"name: web1\nhost: hv-a\nmac: \"02:00:00:00:00:11\"\nipv4: 10.0.0.11/24\nsecurity-groups: [web]\n",
		"name: ops1\nhost: hv-b\ntap: web1\nmac: \"02:00:00:00:00:31\"\nipv4: 10.0.0.31/24\nipv6: 2001:db8::31/64\n",
	}
	file := head + "security-groups:\n"
	var ge, ie []*Entry
	for _, g := range groups {
		file += "  - " + strings.ReplaceAll(strings.TrimSuffix(g, "\n"), "\n", "\n    ") + "\n"
		e, err := ParseGroup([]byte(g))
		if err != nil {
			t.Fatal(err)
		}
		ge = append(ge, e)
	}
	file += "instances:\n"
	for _, in := range instances {
		file += "  - " + strings.ReplaceAll(strings.TrimSuffix(in, "\n"), "\n", "\n    ") + "\n"
		e, err := ParseInstance([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		ie = append(ie, e)
	}
	want, err := Parse("", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Assemble("", []byte(head), ge, ie)
	if err != nil {
		t.Fatal(err)
	}
	if ch := Changes(want, got); len(ch) != 0 {
		t.Errorf("assembled differs from parsed: %v", ch)
	}
	a, _ := Marshal(want)
	b, _ := Marshal(got)
	if string(a) != string(b) {
		t.Errorf("assembled:\n%s\nparsed:\n%s", b, a)
	}

	// The same duplicates refused with the same fields and messages, but for lines.
	dup, err := ParseInstance([]byte("name: web2\nhost: hv-a\nmac: \"02:00:00:00:00:11\"\nipv4: 10.0.0.1/24\nsecurity-groups: [nosuch]\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Assemble("", []byte(head), ge, append(ie, dup))
	es, ok := err.(Errors)
	if !ok || len(es) != 3 {
		t.Fatalf("got %v; want three problems: the MAC, the gateway's address, the missing group", err)
	}
	for _, want := range []string{
		"instances[2].mac: 02:00:00:00:00:11 is already used by instances[0].mac",
		"instances[2].ipv4: 10.0.0.1 is already used by uplink.gateway",
		"instances[2].security-groups[0]: no group named \"nosuch\"",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v\nwant it to contain %q", err, want)
		}
	}
}
