package lab

// AddNamespace creates the named network namespace the way the lab does
// (with /run/netns a shared mount point first, as `ip netns add` makes it),
// for tests and tools that need a namespace outside a lab topology. A
// namespace of that name that is already there is an error.
func AddNamespace(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := prepareRunDir(); err != nil {
		return err
	}
	return createNamed(name)
}

// DeleteNamespace unpins the named namespace like `ip netns del`; a missing
// one is not an error.
func DeleteNamespace(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	return removeNamed(name)
}
