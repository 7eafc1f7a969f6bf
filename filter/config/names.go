package config

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
)

// Group and instance names end up in control API paths, rule references
// (group/direction/index), network namespace names and command lines, hence a
// conservative alphabet that none of those needs to quote.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

const nameRule = "a name is 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"

// reservedInstanceNames cannot name an instance: `uplink` is how trace and
// replay name the uplink port, and the lab's outside namespace is `internet`.
var reservedInstanceNames = []string{"uplink", "internet"}

func checkGroupName(s string) error {
	if !nameRE.MatchString(s) {
		return fmt.Errorf("%q is not a valid group name; %s", s, nameRule)
	}
	return nil
}

func checkInstanceName(s string) error {
	if !nameRE.MatchString(s) {
		return fmt.Errorf("%q is not a valid instance name; %s", s, nameRule)
	}
	if contains(reservedInstanceNames, s) {
		return fmt.Errorf("%q is reserved (names that cannot be instances: %s)", s, strings.Join(reservedInstanceNames, ", "))
	}
	return nil
}

// checkIfName applies the kernel's rule for interface names (dev_valid_name):
// shorter than IFNAMSIZ (16), not "." or "..", no '/', ':' or white space.
func checkIfName(s string) error {
	if s == "" || len(s) > 15 || s == "." || s == ".." || strings.ContainsAny(s, "/:") || strings.IndexFunc(s, unicode.IsSpace) >= 0 {
		return fmt.Errorf("%q is not a valid interface name; an interface name is 1-15 bytes without '/', ':' or white space", s)
	}
	return nil
}
