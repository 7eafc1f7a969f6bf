// Package lab builds the `sgswitch lab` topology out of network namespaces.
//
// The switch opens one TAP device per instance and one for the uplink in the
// current namespace and keeps their file descriptors. Up then moves the kernel
// side of every TAP into a named namespace of its own and configures it, so
// each namespace behaves like the VM behind that port:
//
//   - one namespace per instance, named after it, holding its TAP with the
//     instance's MAC, IPv4 address (and IPv6 address, usable at once: no DAD),
//     and, when the configuration has an uplink, default routes through the
//     internet namespace;
//   - one namespace behind the uplink (DefaultInternetNS, "internet"), holding
//     the uplink TAP with the gateway address and every lab host address on
//     its loopback, so traffic to "outside" addresses is answered locally and
//     never leaves the machine.
//
// The gateway of the configuration is IPv4, so for IPv6 the internet
// namespace also answers as the link-local router fe80::1 on the uplink, each
// instance with an IPv6 address routes ::/0 there, and the internet namespace
// routes the instances' IPv6 prefixes back on the uplink. IPv6 lab hosts are
// then reachable like IPv4 ones.
//
// Namespaces are named ones in /run/netns, made like `ip netns add` makes
// them, so `ip netns exec NAME …` works on them. Down removes them by the
// names in the configuration and needs no state, so it also cleans up after
// a crash.
//
// Do, Ping, RawSocket, Capture and Exec run code, probes and commands inside
// a lab namespace for end-to-end tests and the demo.
package lab
