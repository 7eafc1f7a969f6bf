package config

import (
	"net/netip"
	"reflect"
	"testing"
)

func TestAccessors(t *testing.T) {
	c, err := Load("../../testdata/config/rich.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if g, i := c.Group("backend"); g == nil || i != 1 || g.Name != "backend" {
		t.Errorf("Group(backend) = %v, %d", g, i)
	}
	if g, i := c.Group("nope"); g != nil || i != -1 {
		t.Errorf("Group(nope) = %v, %d; want nil, -1", g, i)
	}
	if in, i := c.Instance("web2"); in == nil || i != 1 || in.TAP != "vm-web2" {
		t.Errorf("Instance(web2) = %v, %d", in, i)
	}
	if in, i := c.Instance("nope"); in != nil || i != -1 {
		t.Errorf("Instance(nope) = %v, %d; want nil, -1", in, i)
	}

	for _, tc := range []struct {
		group string
		want  []string
	}{
		{"frontend", []string{"10.0.0.11/32", "2001:db8::11/128", "10.0.0.12/32"}},
		{"backend", []string{"10.0.0.21/32", "203.0.113.0/24", "2001:db8:1::/48"}},
		{"management", []string{"192.0.2.10/32"}},
		{"default", []string{"10.0.0.11/32", "2001:db8::11/128", "10.0.0.41/32"}},
		{"nope", nil},
	} {
		var want []netip.Prefix
		for _, s := range tc.want {
			want = append(want, netip.MustParsePrefix(s))
		}
		if got := c.Members(tc.group); !reflect.DeepEqual(got, want) {
			t.Errorf("Members(%s) = %v, want %v", tc.group, got, want)
		}
	}
	// Members must not hand out the group's own slice.
	m := c.Members("management")
	m[0] = netip.MustParsePrefix("0.0.0.0/0")
	if g, _ := c.Group("management"); g.ExternalSources[0] != netip.MustParsePrefix("192.0.2.10/32") {
		t.Errorf("Members aliases ExternalSources")
	}
}
