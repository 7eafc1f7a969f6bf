package lab

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

func TestDo(t *testing.T) {
	tl := newTestLab(t, "do")
	tl.up(t)
	a := tl.inst(0)

	before, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()

	err = Do(a.Name, func() error {
		_, err := net.InterfaceByName(a.TAP)
		return err
	})
	if err != nil {
		t.Errorf("the TAP is not visible inside %s: %v", a.Name, err)
	}
	if _, err := net.InterfaceByName(a.TAP); err == nil {
		t.Errorf("the TAP of %s is visible outside its namespace", a.Name)
	}
	after, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if !before.Equal(after) {
		t.Errorf("the caller's thread changed namespace: %s, then %s", before, after)
	}

	sentinel := errors.New("from fn")
	if err := Do(a.Name, func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Errorf("Do returned %v, want fn's error", err)
	}
	func() {
		defer func() {
			if v := recover(); v != "boom" {
				t.Errorf("recovered %v, want fn's panic", v)
			}
		}()
		Do(a.Name, func() error { panic("boom") })
	}()
	if err := Do("labt-do-none", func() error { return nil }); err == nil || !strings.Contains(err.Error(), "labt-do-none") {
		t.Errorf("Do in a missing namespace: %v", err)
	}
}
